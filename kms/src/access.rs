//! KMS access control: roles, the permissions they grant, and bindings on the root, folders
//! and keys. A binding applies to its resource and everything below it.
//!
//! Management roles (`kms.auditor` ⊂ `kms.viewer` ⊂ `kms.editor` ⊂ `kms.admin`) do not include
//! the crypto roles: an administrator who should also decrypt needs
//! `kms.keys.decrypter` (or `kms.keys.encrypterDecrypter`) granted explicitly.

use crate::error::KmsError;
use crate::model::{Binding, Resource, State};
use std::collections::HashMap;

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Permission {
    /// Read key metadata and versions, list keys.
    Get,
    /// Create keys in a folder.
    Create,
    /// Change key metadata.
    Update,
    /// Create a new key version.
    Rotate,
    /// Delete a key (erasing all its versions).
    Delete,
    /// Change the primary version.
    SetPrimaryVersion,
    /// Schedule a version's destruction.
    ScheduleVersionDestruction,
    /// Cancel a scheduled destruction.
    CancelVersionDestruction,
    /// Encrypt and generate data keys.
    Encrypt,
    /// Decrypt.
    Decrypt,
    /// Sign with an asymmetric key.
    Sign,
    /// Read an asymmetric key's public key.
    GetPublicKey,
    /// Read bindings.
    ListAccessBindings,
    /// Change bindings.
    UpdateAccessBindings,
}

impl Permission {
    /// The permission's name, as error messages show it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Get => "kms.keys.get",
            Permission::Create => "kms.keys.create",
            Permission::Update => "kms.keys.update",
            Permission::Rotate => "kms.keys.rotate",
            Permission::Delete => "kms.keys.delete",
            Permission::SetPrimaryVersion => "kms.keys.setPrimaryVersion",
            Permission::ScheduleVersionDestruction => "kms.keyVersions.scheduleDestruction",
            Permission::CancelVersionDestruction => "kms.keyVersions.cancelDestruction",
            Permission::Encrypt => "kms.keys.encrypt",
            Permission::Decrypt => "kms.keys.decrypt",
            Permission::Sign => "kms.asymmetricSignatureKeys.sign",
            Permission::GetPublicKey => "kms.asymmetricSignatureKeys.getPublicKey",
            Permission::ListAccessBindings => "kms.keys.listAccessBindings",
            Permission::UpdateAccessBindings => "kms.keys.updateAccessBindings",
        }
    }
}

/// Every role the KMS knows.
pub const ROLES: &[&str] = &[
    "kms.auditor",
    "kms.viewer",
    "kms.editor",
    "kms.admin",
    "kms.keys.encrypter",
    "kms.keys.decrypter",
    "kms.keys.encrypterDecrypter",
    "kms.asymmetricSignatureKeys.signer",
    "kms.asymmetricSignatureKeys.publicKeyViewer",
];

/// Whether `role` grants `permission`.
pub fn role_grants(role: &str, permission: Permission) -> bool {
    use Permission as P;
    let auditor = matches!(permission, P::Get | P::ListAccessBindings);
    let viewer = auditor || permission == P::GetPublicKey;
    let editor = viewer || matches!(permission, P::Create | P::Update | P::Rotate);
    let admin = editor
        || matches!(
            permission,
            P::Delete
                | P::SetPrimaryVersion
                | P::ScheduleVersionDestruction
                | P::CancelVersionDestruction
                | P::UpdateAccessBindings
        );
    match role {
        "kms.auditor" => auditor,
        "kms.viewer" => viewer,
        "kms.editor" => editor,
        "kms.admin" => admin,
        "kms.keys.encrypter" => permission == P::Encrypt,
        "kms.keys.decrypter" => permission == P::Decrypt,
        "kms.keys.encrypterDecrypter" => matches!(permission, P::Encrypt | P::Decrypt),
        "kms.asymmetricSignatureKeys.signer" => permission == P::Sign,
        "kms.asymmetricSignatureKeys.publicKeyViewer" => permission == P::GetPublicKey,
        _ => false,
    }
}

/// Checks a binding before it is stored: a known role and a well-formed subject.
pub fn validate_binding(binding: &Binding) -> Result<(), KmsError> {
    if !ROLES.contains(&binding.role.as_str()) {
        return Err(KmsError::InvalidArgument(format!(
            "role_id: unknown role {:?}; known roles: {}",
            binding.role,
            ROLES.join(", ")
        )));
    }
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    };
    let ok = match binding.subject.split_once(':') {
        Some(("system", name)) => matches!(name, "allAuthenticatedUsers" | "allUsers"),
        Some(("user" | "group" | "serviceAccount", name)) => valid_name(name),
        _ => false,
    };
    if !ok {
        return Err(KmsError::InvalidArgument(format!(
            "subject: {:?} must be user:<name>, group:<name>, serviceAccount:<id>, \
             system:allAuthenticatedUsers or system:allUsers",
            binding.subject
        )));
    }
    Ok(())
}

/// Who is asking, as subjects to match against bindings.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    /// `user:<name>` or `serviceAccount:<id>`.
    pub subject: &'a str,
    /// `group:<name>` memberships.
    pub groups: Groups<'a>,
}

/// A principal's groups, as its source holds them: a connection's resolved identity owns
/// its strings, a relayed request read in place borrows them from the frame.
#[derive(Debug, Clone, Copy)]
pub enum Groups<'a> {
    /// Owned strings, such as a peer's resolved groups.
    Owned(&'a [String]),
    /// Strings borrowed from a request.
    Borrowed(&'a [&'a str]),
}

impl Groups<'_> {
    fn contains(&self, subject: &str) -> bool {
        match self {
            Groups::Owned(groups) => groups.iter().any(|g| g == subject),
            Groups::Borrowed(groups) => groups.contains(&subject),
        }
    }
}

impl Principal<'_> {
    fn matches(&self, subject: &str) -> bool {
        // Every caller reaching the KMS has been identified, so both system groups match.
        subject == self.subject
            || subject == "system:allAuthenticatedUsers"
            || subject == "system:allUsers"
            || self.groups.contains(subject)
    }
}

/// Bindings indexed for checks without allocation.
#[derive(Debug, Default)]
pub struct BindingIndex {
    /// Bindings on the root.
    root: Vec<Binding>,
    /// Bindings by folder id.
    folders: HashMap<String, Vec<Binding>>,
    /// Bindings by key id.
    keys: HashMap<String, Vec<Binding>>,
}

impl BindingIndex {
    /// Indexes the bindings of `state`.
    pub fn build(state: &State) -> Self {
        let mut index = Self::default();
        for (resource, bindings) in &state.bindings {
            let list = bindings.iter().cloned().collect();
            match resource {
                Resource::Root => index.root = list,
                Resource::Folder(id) => {
                    index.folders.insert(id.clone(), list);
                }
                Resource::Key(id) => {
                    index.keys.insert(id.clone(), list);
                }
            }
        }
        index
    }

    /// Whether `who` holds `permission` on a key in `folder` (or on the folder itself when
    /// `key` is `None`), through a binding on the key, the folder or the root.
    pub fn allows(
        &self,
        who: Principal<'_>,
        key: Option<&str>,
        folder: &str,
        permission: Permission,
    ) -> bool {
        let grants = |list: &[Binding]| {
            list.iter()
                .any(|b| role_grants(&b.role, permission) && who.matches(&b.subject))
        };
        key.and_then(|k| self.keys.get(k))
            .is_some_and(|l| grants(l))
            || self.folders.get(folder).is_some_and(|l| grants(l))
            || grants(&self.root)
    }

    /// Whether `who` holds `permission` on the root itself.
    pub fn allows_on_root(&self, who: Principal<'_>, permission: Permission) -> bool {
        self.root
            .iter()
            .any(|b| role_grants(&b.role, permission) && who.matches(&b.subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lattice() {
        assert!(role_grants("kms.admin", Permission::UpdateAccessBindings));
        assert!(!role_grants("kms.editor", Permission::UpdateAccessBindings));
        assert!(!role_grants(
            "kms.editor",
            Permission::ScheduleVersionDestruction
        ));
        assert!(role_grants("kms.editor", Permission::Rotate));
        assert!(!role_grants("kms.viewer", Permission::Create));
        assert!(role_grants("kms.auditor", Permission::Get));
        assert!(!role_grants("kms.auditor", Permission::GetPublicKey));
        for crypto in [Permission::Encrypt, Permission::Decrypt] {
            assert!(
                !role_grants("kms.admin", crypto),
                "admin must not imply {crypto:?}"
            );
            assert!(role_grants("kms.keys.encrypterDecrypter", crypto));
        }
        assert!(!role_grants("kms.keys.encrypter", Permission::Decrypt));
        assert!(!role_grants("kms.keys.decrypter", Permission::Encrypt));
        assert!(!role_grants("no.such.role", Permission::Get));
    }

    #[test]
    fn bindings_inherit_downwards_and_match_groups() {
        let mut state = State::new(&["user:root".into()], &[]);
        state.bindings.insert(
            Resource::Folder("f1".into()),
            [Binding {
                role: "kms.keys.decrypter".into(),
                subject: "group:ops".into(),
            }]
            .into(),
        );
        let index = BindingIndex::build(&state);
        let owned = vec!["group:ops".to_string()];
        let borrowed = ["group:dev", "group:ops"];
        // The same groups, owned by a connection's identity or borrowed from a request.
        for groups in [Groups::Owned(&owned), Groups::Borrowed(&borrowed)] {
            let ops = Principal {
                subject: "user:bob",
                groups,
            };
            assert!(index.allows(ops, Some("k1"), "f1", Permission::Decrypt));
            assert!(!index.allows(ops, Some("k1"), "f2", Permission::Decrypt));
            assert!(!index.allows(ops, Some("k1"), "f1", Permission::Encrypt));
        }
        let dev = Principal {
            subject: "user:bob",
            groups: Groups::Borrowed(&["group:dev", "group:op"]),
        };
        assert!(!index.allows(dev, Some("k1"), "f1", Permission::Decrypt));
        let root = Principal {
            subject: "user:root",
            groups: Groups::Owned(&[]),
        };
        assert!(index.allows(root, Some("k9"), "f9", Permission::Delete));
        assert!(!index.allows(root, Some("k9"), "f9", Permission::Decrypt));
    }

    #[test]
    fn binding_validation() {
        let b = |role: &str, subject: &str| Binding {
            role: role.into(),
            subject: subject.into(),
        };
        assert!(validate_binding(&b("kms.admin", "user:alice")).is_ok());
        assert!(validate_binding(&b("kms.admin", "system:allUsers")).is_ok());
        assert!(validate_binding(&b("kms.superuser", "user:alice")).is_err());
        assert!(validate_binding(&b("kms.admin", "alice")).is_err());
        assert!(validate_binding(&b("kms.admin", "system:everyone")).is_err());
        assert!(validate_binding(&b("kms.admin", "user:")).is_err());
    }
}
