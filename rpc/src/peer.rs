//! Who is on the other end of a Unix socket.
//!
//! The kernel reports the peer's uid and gid (`SO_PEERCRED`) when it connects; the names come
//! from the system's user database, falling back to the numeric id when there is no entry.

use tokio::net::UnixStream;

/// Credentials of a connected peer, as the kernel reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Effective user id of the peer when it connected.
    pub uid: u32,
    /// Effective group id of the peer when it connected.
    pub gid: u32,
    /// Process id, when the kernel reports one.
    pub pid: Option<i32>,
}

impl PeerCred {
    /// Reads the peer credentials of a connected stream.
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
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

/// Resolves a peer's uid and gid to subjects through the user database.
pub fn resolve(cred: &PeerCred) -> LocalIdentity {
    let user = uzers::get_user_by_uid(cred.uid);
    let subject = match &user {
        Some(u) => format!("user:{}", u.name().to_string_lossy()),
        None => format!("user:{}", cred.uid),
    };
    let mut gids = vec![cred.gid];
    if let Some(u) = &user
        && let Some(groups) = uzers::get_user_groups(u.name(), u.primary_group_id())
    {
        gids.extend(groups.iter().map(|g| g.gid()));
    }
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
            pid: None,
        });
        assert_eq!(id.subject, "user:4000000001");
        assert_eq!(id.groups, vec!["group:4000000002".to_string()]);
    }

    #[test]
    fn root_resolves_by_name() {
        let id = resolve(&PeerCred {
            uid: 0,
            gid: 0,
            pid: None,
        });
        assert_eq!(id.subject, "user:root");
        assert!(id.groups.contains(&"group:root".to_string()));
    }
}
