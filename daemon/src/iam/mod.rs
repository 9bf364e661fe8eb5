//! Identity and access in lockboxd, without storage: who a caller is ([`Caller`]), the
//! roles and permissions of Lockbox ([`roles`]), the index of bindings every request is
//! checked against ([`bindings`]), and service-account keys and tokens ([`tokens`]). The
//! service applies them to stored resources (`service::access`, `service::accounts`).

pub mod bindings;
pub mod roles;
pub mod tokens;

use lockbox_proto::Principal;

/// Who is calling: the subject and groups the front-end identified (from the kernel, or a
/// service-account token).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The subject and its groups, in the form `lockbox-kms` is given them when the daemon
    /// acts on the caller's behalf.
    pub principal: Principal,
    /// Where the request came from, for the audit trail.
    pub frontend: Frontend,
}

/// The front-end a caller's requests come through, and the process on the other end when
/// the kernel says: named in every audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    /// The front-end: `unix` for lockboxd's own socket.
    pub name: &'static str,
    /// The peer's process id, from `SO_PEERCRED`.
    pub pid: Option<u32>,
}

impl Caller {
    /// The caller's subject, e.g. `user:alice`.
    pub fn subject(&self) -> &str {
        &self.principal.subject
    }
}
