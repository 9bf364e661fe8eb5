//! Process hardening for both servers, which hold key material: no core dumps, no ptrace by
//! peers, memory kept out of swap where the process may lock it, and a state directory
//! nobody else can read.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Makes the process non-dumpable and sets its core size limit to zero, so a crash cannot
/// write key material to disk and other processes of the same user cannot attach to it.
pub fn forbid_core_dumps() -> io::Result<()> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Whether memory was locked, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryLock {
    /// Every page, present and future, is kept out of swap as it is touched.
    Locked,
    /// Not locked: the reason, for the log.
    Unlocked(String),
}

/// Keeps the process's memory out of swap (`mlockall`, each page locked when first touched)
/// when nothing limits how much it may lock: an unlimited `RLIMIT_MEMLOCK` (the units set
/// `LimitMEMLOCK=infinity`). Under a finite limit it does not try, root or not (a container's
/// root may lack the capability that lifts the limit): memory locked up to the limit would
/// make later allocations fail.
pub fn lock_memory() -> MemoryLock {
    use rustix::mm::{MlockAllFlags, mlockall};
    use rustix::process::{Resource, getrlimit};
    let limit = getrlimit(Resource::Memlock);
    if limit.current.is_some() {
        return MemoryLock::Unlocked(format!(
            "the locked-memory limit is {} bytes, not unlimited (LimitMEMLOCK=infinity)",
            limit.current.unwrap_or_default()
        ));
    }
    match mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT) {
        Ok(()) => MemoryLock::Locked,
        Err(e) => MemoryLock::Unlocked(format!("mlockall failed: {e}")),
    }
}

/// Creates `dir` (mode 0700) if it is missing, and refuses one that other users may read,
/// write or enter, with the fix in the message.
pub fn private_directory(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is open to other users (mode {:o}); it holds secrets: chmod 700 it",
            dir.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// Hardens a server at start: no core dumps, memory locked where it may be (said in the log
/// either way).
pub fn harden(name: &str) -> io::Result<()> {
    forbid_core_dumps()?;
    match lock_memory() {
        MemoryLock::Locked => tracing::info!("{name}: memory locked, kept out of swap"),
        MemoryLock::Unlocked(why) => {
            tracing::warn!("{name}: memory not locked, key material may reach swap: {why}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_others_can_enter_is_refused_and_a_new_one_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b");
        assert_eq!(private_directory(&fresh), Ok(()));
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = private_directory(&fresh).unwrap_err();
        assert!(err.contains("chmod 700"), "{err}");
    }
}
