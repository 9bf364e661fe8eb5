//! Lockbox's roles and the permissions they grant (the action table of Yandex Lockbox's
//! access management), and the bindings that grant them. A binding applies to its resource
//! and everything below it, and cannot be narrowed from below.

use crate::error::LockboxError;
use crate::model::Binding;

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Permission {
    /// Read secret metadata, versions and operations; list secrets.
    Get,
    /// Create secrets.
    Create,
    /// Change secret metadata, activate, deactivate, change the current version, schedule
    /// or cancel destruction.
    Update,
    /// Delete secrets.
    Delete,
    /// Add versions (change the content).
    AddVersion,
    /// Read payloads.
    GetPayload,
    /// Read access bindings.
    ListAccessBindings,
    /// Change access bindings.
    SetAccessBindings,
    /// Create, change and delete clouds and folders.
    ManageResources,
    /// See a cloud's quotas and their usage.
    GetQuotas,
    /// Service maintenance on the organization: rewrapping the keyring and data keys.
    /// lockbox's own; granted by the roles that grant everything.
    ManageService,
}

impl Permission {
    /// The permission's name, as error messages show it.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Get => "lockbox.secrets.get",
            Permission::Create => "lockbox.secrets.create",
            Permission::Update => "lockbox.secrets.update",
            Permission::Delete => "lockbox.secrets.delete",
            Permission::AddVersion => "lockbox.secrets.addVersion",
            Permission::GetPayload => "lockbox.payloads.get",
            Permission::ListAccessBindings => "lockbox.secrets.listAccessBindings",
            Permission::SetAccessBindings => "lockbox.secrets.setAccessBindings",
            Permission::ManageResources => "resource-manager.resources.manage",
            Permission::ManageService => "lockbox.service.manage",
            Permission::GetQuotas => "lockbox.quotas.get",
        }
    }

    /// Every permission.
    pub const ALL: [Permission; 11] = [
        Permission::Get,
        Permission::Create,
        Permission::Update,
        Permission::Delete,
        Permission::AddVersion,
        Permission::GetPayload,
        Permission::ListAccessBindings,
        Permission::SetAccessBindings,
        Permission::ManageResources,
        Permission::ManageService,
        Permission::GetQuotas,
    ];
}

/// Every role lockboxd knows.
pub const ROLES: &[&str] = &[
    "lockbox.auditor",
    "lockbox.viewer",
    "lockbox.editor",
    "lockbox.admin",
    "lockbox.payloadViewer",
    "auditor",
    "viewer",
    "editor",
    "admin",
    "resource-manager.admin",
    "resource-manager.clouds.owner",
    "resource-manager.clouds.member",
    "organization-manager.admin",
    "organization-manager.organizations.owner",
];

/// Roles only an owner may grant.
const OWNER_ROLES: &[&str] = &[
    "resource-manager.clouds.owner",
    "organization-manager.organizations.owner",
];

/// Whether `role` grants `permission`.
///
/// From the seeds: auditor ⊂ viewer ⊂ editor ⊂ admin for both the lockbox.* and the
/// primitive roles; lockbox.editor cannot read payloads, lockbox.payloadViewer can only read
/// payloads, lockbox.admin includes both. The primitive viewer (and so editor and admin)
/// "provides access to service data in read mode", so it reads payloads. Bindings may be
/// changed by lockbox.admin, admin, resource-manager.admin, organization-manager.admin and
/// the two owner roles; the owners may do everything.
pub fn role_grants(role: &str, permission: Permission) -> bool {
    use Permission as P;
    // The seeds give every role that sees secrets' metadata the quota details too.
    let auditor = matches!(permission, P::Get | P::ListAccessBindings | P::GetQuotas);
    let editor = auditor
        || matches!(
            permission,
            P::Create | P::Update | P::Delete | P::AddVersion
        );
    match role {
        "lockbox.auditor" | "lockbox.viewer" | "auditor" => auditor,
        "lockbox.editor" => editor,
        "lockbox.payloadViewer" => permission == P::GetPayload,
        "lockbox.admin" => editor || matches!(permission, P::GetPayload | P::SetAccessBindings),
        "viewer" => auditor || permission == P::GetPayload,
        "editor" => editor || permission == P::GetPayload || permission == P::ManageResources,
        "admin" => true,
        "resource-manager.admin" | "organization-manager.admin" => {
            auditor || matches!(permission, P::SetAccessBindings | P::ManageResources)
        }
        "resource-manager.clouds.owner" | "organization-manager.organizations.owner" => true,
        _ => false,
    }
}

/// Checks a binding before it is stored: a known role and a well-formed subject.
pub fn validate_binding(b: &Binding) -> Result<(), LockboxError> {
    if !ROLES.contains(&b.role.as_str()) {
        return Err(LockboxError::InvalidArgument(format!(
            "role_id: unknown role {:?}; known roles: {}",
            b.role,
            ROLES.join(", ")
        )));
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 256
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.@".contains(&c))
    };
    let ok = match b.subject.split_once(':') {
        Some(("system", n)) => matches!(n, "allAuthenticatedUsers" | "allUsers"),
        Some(("user" | "group" | "serviceAccount", n)) => name_ok(n),
        _ => false,
    };
    if !ok {
        return Err(LockboxError::InvalidArgument(format!(
            "subject: {:?} must be user:<name>, group:<name>, serviceAccount:<id>, \
             system:allAuthenticatedUsers or system:allUsers",
            b.subject
        )));
    }
    Ok(())
}

/// Whether granting `role` needs its granter to be an owner.
pub fn is_owner_role(role: &str) -> bool {
    OWNER_ROLES.contains(&role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission as P;

    #[test]
    fn seed_action_table() {
        // Create/delete, change metadata, change content: admin and editor only.
        for p in [P::Create, P::Delete, P::Update, P::AddVersion] {
            assert!(role_grants("lockbox.admin", p) && role_grants("lockbox.editor", p));
            assert!(!role_grants("lockbox.viewer", p) && !role_grants("lockbox.payloadViewer", p));
        }
        // Read metadata: admin, editor, viewer.
        assert!(role_grants("lockbox.viewer", P::Get));
        assert!(!role_grants("lockbox.payloadViewer", P::Get));
        // Read content: admin and payloadViewer, not editor or viewer.
        assert!(role_grants("lockbox.admin", P::GetPayload));
        assert!(role_grants("lockbox.payloadViewer", P::GetPayload));
        assert!(!role_grants("lockbox.editor", P::GetPayload));
        assert!(!role_grants("lockbox.viewer", P::GetPayload));
        // Control access: admin only among lockbox.* roles.
        assert!(role_grants("lockbox.admin", P::SetAccessBindings));
        assert!(!role_grants("lockbox.editor", P::SetAccessBindings));
        // Primitive auditor sees no data; viewer does.
        assert!(!role_grants("auditor", P::GetPayload));
        assert!(role_grants("viewer", P::GetPayload));
        assert!(!role_grants("resource-manager.clouds.member", P::Get));
    }
}
