//! Process hardening for a process that holds root keys: no core dumps, no ptrace by peers.

/// Makes the process non-dumpable and sets its core size limit to zero, so a crash cannot
/// write key material to disk and other processes of the same user cannot attach to it.
pub fn forbid_core_dumps() -> std::io::Result<()> {
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
