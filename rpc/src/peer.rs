//! Who is on the other end of a Unix socket.
//!
//! The kernel reports the peer's uid, gid (`SO_PEERCRED`) and supplementary groups
//! (`SO_PEERGROUPS`) as they were when it connected: the groups are the process's own, not
//! what the user database says the user could have, so a process that dropped a group does
//! not bring its roles along. Only the names come from the user database, falling back to
//! the numeric id when there is no entry.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use tokio::net::UnixStream;

/// Credentials of a connected peer, as the kernel reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective user id of the peer when it connected.
    pub uid: u32,
    /// Effective group id of the peer when it connected.
    pub gid: u32,
    /// Supplementary group ids of the peer when it connected.
    pub groups: Vec<u32>,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
}

impl PeerCred {
    /// Reads the peer credentials of a connected stream.
    pub fn of(stream: &UnixStream) -> io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            groups: peer_groups(stream.as_fd())?,
            pid: cred.pid(),
        })
    }
}

/// Most supplementary groups a Linux process can have (`NGROUPS_MAX`).
const MAX_GROUPS: usize = 65_536;

/// The supplementary groups the kernel recorded for the peer of a connected Unix socket
/// (`getsockopt(SO_PEERGROUPS)`, Linux 4.13 and later).
///
/// The workspace's one `unsafe` block: no safe binding of this option exists in the crates
/// the project uses (rustix 1.1 has `SO_PEERCRED` only).
#[allow(unsafe_code)]
fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    const GID: usize = size_of::<libc::gid_t>();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let capacity = groups.len() * GID;
        let mut len = libc::socklen_t::try_from(capacity).map_err(io::Error::other)?;
        // SAFETY: `groups` is an initialised buffer of `capacity` bytes that lives across the
        // call, and `len` says so; the kernel writes at most `len` bytes into it and stores the
        // size it wrote (or, with ERANGE, the size it needs) in `len`.
        let status = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &raw mut len,
            )
        };
        let needed = len as usize;
        if status == 0 {
            groups.truncate(needed.min(capacity) / GID);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) || needed <= capacity {
            return Err(error);
        }
        if needed / GID > MAX_GROUPS {
            return Err(io::Error::other(
                "the peer reports more groups than Linux allows",
            ));
        }
        groups.resize(needed.div_ceil(GID), 0);
    }
}

/// A local caller as subjects: `user:<name>` and its `group:<name>` memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    /// `user:<name>` (or `user:<uid>` without a passwd entry).
    pub subject: String,
    /// `group:<name>` for the primary and supplementary groups.
    pub groups: Vec<String>,
}

/// The `user:<name>` subject of a uid.
pub fn user_subject(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(user) => format!("user:{}", user.name().to_string_lossy()),
        None => format!("user:{uid}"),
    }
}

/// Names a peer's uid, gid and supplementary groups as subjects. The groups are the ones the
/// kernel reported, whatever the user database says the user belongs to.
pub fn resolve(cred: &PeerCred) -> LocalIdentity {
    let subject = user_subject(cred.uid);
    let mut gids = Vec::with_capacity(cred.groups.len() + 1);
    gids.push(cred.gid);
    gids.extend_from_slice(&cred.groups);
    gids.sort_unstable();
    gids.dedup();
    let groups = gids
        .into_iter()
        .map(|gid| match uzers::get_group_by_gid(gid) {
            Some(g) => format!("group:{}", g.name().to_string_lossy()),
            None => format!("group:{gid}"),
        })
        .collect();
    LocalIdentity { subject, groups }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_uid_falls_back_to_number() {
        let id = resolve(&PeerCred {
            uid: 4_000_000_001,
            gid: 4_000_000_002,
            groups: vec![4_000_000_003, 4_000_000_002],
            pid: None,
        });
        assert_eq!(id.subject, "user:4000000001");
        assert_eq!(
            id.groups,
            vec![
                "group:4000000002".to_string(),
                "group:4000000003".to_string()
            ]
        );
    }

    #[test]
    fn root_resolves_by_name_with_only_the_groups_given() {
        let id = resolve(&PeerCred {
            uid: 0,
            gid: 0,
            groups: Vec::new(),
            pid: None,
        });
        assert_eq!(id.subject, "user:root");
        assert_eq!(id.groups, vec!["group:root".to_string()]);
    }

    #[tokio::test]
    async fn the_kernel_reports_this_process_s_own_groups() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = PeerCred::of(&a).unwrap();
        let mine = rustix::process::getgroups().unwrap();
        let mut mine: Vec<u32> = mine.iter().map(|g| g.as_raw()).collect();
        let mut reported = cred.groups.clone();
        mine.sort_unstable();
        reported.sort_unstable();
        assert_eq!(reported, mine);
    }
}
