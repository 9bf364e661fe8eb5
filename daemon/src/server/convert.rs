//! Hand-written conversions between `proto` messages and the daemon's domain types, and the
//! one conversion of its error to the wire's. The only place where the two meet.

use crate::error::LockboxError;
use crate::iam::tokens::public_key_pem;
use crate::model::{
    Binding, Cloud, Entry, Folder, OperationOutcome, OperationRecord, PasswordSpec, Resource,
    SecretRecord, SecretStatus, ServiceAccountKeyRecord, ServiceAccountRecord, VersionMeta,
    VersionStatus,
};
use crate::service::{EntryChange, SecretUpdate};
use lockbox_proto::lockbox as wire;
use lockbox_proto::{ErrorCode, common};
use lockbox_rpc::server::AnswerError;

impl AnswerError for LockboxError {
    fn code(&self) -> ErrorCode {
        match self {
            LockboxError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            LockboxError::NotFound(_) => ErrorCode::NotFound,
            LockboxError::AlreadyExists(_) => ErrorCode::AlreadyExists,
            LockboxError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            LockboxError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            LockboxError::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            LockboxError::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            LockboxError::Unavailable(_) => ErrorCode::Unavailable,
            LockboxError::Internal(_) => ErrorCode::Internal,
        }
    }
}

pub(crate) fn version_to(v: VersionMeta) -> wire::Version {
    wire::Version {
        id: v.id,
        secret_id: v.secret_id,
        created_at: v.created_at,
        destroy_at: v.destroy_at,
        description: v.description,
        status: match v.status {
            VersionStatus::Active => wire::VersionStatus::Active,
            VersionStatus::ScheduledForDestruction => wire::VersionStatus::ScheduledForDestruction,
            VersionStatus::Destroyed => wire::VersionStatus::Destroyed,
        },
        payload_entry_keys: v.entry_keys,
    }
}

fn password_to(p: PasswordSpec) -> wire::PasswordPayloadSpecification {
    wire::PasswordPayloadSpecification {
        password_key: p.password_key,
        length: p.length,
        include_uppercase: p.include_uppercase,
        include_lowercase: p.include_lowercase,
        include_digits: p.include_digits,
        include_punctuation: p.include_punctuation,
        included_punctuation: p.included_punctuation,
        excluded_punctuation: p.excluded_punctuation,
    }
}

pub(crate) fn password_from(p: wire::PasswordPayloadSpecification) -> PasswordSpec {
    PasswordSpec {
        password_key: p.password_key,
        length: p.length,
        include_uppercase: p.include_uppercase,
        include_lowercase: p.include_lowercase,
        include_digits: p.include_digits,
        include_punctuation: p.include_punctuation,
        included_punctuation: p.included_punctuation,
        excluded_punctuation: p.excluded_punctuation,
    }
}

pub(crate) fn secret_to(s: SecretRecord, current: Option<VersionMeta>) -> wire::Secret {
    wire::Secret {
        id: s.id,
        folder_id: s.folder_id,
        created_at: s.created_at,
        name: s.name,
        description: s.description,
        labels: s.labels,
        kms_key_id: s.kms_key_id.unwrap_or_default(),
        status: match s.status {
            SecretStatus::Active => wire::SecretStatus::Active,
            SecretStatus::Inactive => wire::SecretStatus::Inactive,
        },
        current_version: current.map(version_to),
        deletion_protection: s.deletion_protection,
        password_payload_specification: s.password_spec.map(password_to),
    }
}

pub(crate) fn cloud_to(c: Cloud) -> wire::Cloud {
    wire::Cloud {
        id: c.id,
        organization_id: c.organization_id,
        name: c.name,
        description: c.description,
        created_at: c.created_at,
    }
}

pub(crate) fn folder_to(f: Folder) -> wire::Folder {
    wire::Folder {
        id: f.id,
        cloud_id: f.cloud_id,
        name: f.name,
        description: f.description,
        created_at: f.created_at,
    }
}

pub(crate) fn operation_to(op: OperationRecord) -> wire::Operation {
    let result = match op.outcome {
        OperationOutcome::Secret(s, v) => wire::OperationResult::Secret(Box::new(secret_to(*s, v))),
        OperationOutcome::Version(v) => wire::OperationResult::Version(version_to(v)),
        OperationOutcome::Cloud(c) => wire::OperationResult::Cloud(cloud_to(c)),
        OperationOutcome::Folder(f) => wire::OperationResult::Folder(folder_to(f)),
        OperationOutcome::Empty => wire::OperationResult::Empty,
    };
    wire::Operation {
        id: op.id,
        description: op.description,
        created_at: op.created_at,
        created_by: op.created_by,
        modified_at: op.created_at,
        done: true,
        resource_id: op.resource_id,
        result: Some(Ok(result)),
    }
}

/// A payload entry from the wire; text values must be UTF-8.
fn entry_from(key: String, value: wire::PayloadValue) -> Result<Entry, LockboxError> {
    let (text, bytes) = match value {
        wire::PayloadValue::Text(b) => {
            if std::str::from_utf8(b.expose()).is_err() {
                return Err(LockboxError::InvalidArgument(format!(
                    "payload_entries: text_value of {key:?} is not valid UTF-8"
                )));
            }
            (true, b)
        }
        wire::PayloadValue::Binary(b) => (false, b),
        _ => {
            return Err(LockboxError::InvalidArgument(format!(
                "payload_entries: value of {key:?} has an unknown kind"
            )));
        }
    };
    Ok(Entry {
        key,
        text,
        value: bytes.expose().to_vec(),
    })
}

pub(crate) fn changes_from(
    changes: Vec<wire::PayloadEntryChange>,
) -> Result<Vec<EntryChange>, LockboxError> {
    changes
        .into_iter()
        .map(|c| match c.value {
            Some(v) => entry_from(c.key, v).map(EntryChange::Set),
            None => Ok(EntryChange::Remove(c.key)),
        })
        .collect()
}

pub(crate) fn secret_update_from(u: wire::UpdateSecret) -> Result<SecretUpdate, LockboxError> {
    if u.update_mask.is_empty() {
        return Err(LockboxError::InvalidArgument(
            "update_mask: name at least one field to change".into(),
        ));
    }
    let mut update = SecretUpdate::default();
    for field in &u.update_mask {
        match field.as_str() {
            "name" => update.name = Some(u.name.clone()),
            "description" => update.description = Some(u.description.clone()),
            "labels" => update.labels = Some(u.labels.clone()),
            "deletion_protection" => update.deletion_protection = Some(u.deletion_protection),
            "password_payload_specification" => {
                update.password_spec =
                    Some(u.password_payload_specification.clone().map(password_from))
            }
            other => {
                return Err(LockboxError::InvalidArgument(format!(
                    "update_mask: unknown field {other:?}; known: name, description, labels, \
                     deletion_protection, password_payload_specification"
                )));
            }
        }
    }
    Ok(update)
}

pub(crate) fn resource_from(r: wire::LockboxResource) -> Result<Resource, LockboxError> {
    Ok(match r {
        wire::LockboxResource::Organization(id) => Resource::Organization(id),
        wire::LockboxResource::Cloud(id) => Resource::Cloud(id),
        wire::LockboxResource::Folder(id) => Resource::Folder(id),
        wire::LockboxResource::Secret(id) => Resource::Secret(id),
        _ => {
            return Err(LockboxError::InvalidArgument(
                "resource: unknown kind".into(),
            ));
        }
    })
}

pub(crate) fn binding_from(b: common::AccessBinding) -> Binding {
    Binding {
        role: b.role_id,
        subject: b.subject,
    }
}

pub(crate) fn binding_to(b: Binding) -> common::AccessBinding {
    common::AccessBinding {
        role_id: b.role,
        subject: b.subject,
    }
}

pub(crate) fn delta_from(d: common::AccessBindingDelta) -> Result<(bool, Binding), LockboxError> {
    let add = match d.action {
        common::AccessBindingAction::Add => true,
        common::AccessBindingAction::Remove => false,
        _ => return Err(LockboxError::InvalidArgument("action: unknown".into())),
    };
    Ok((add, binding_from(d.binding)))
}

pub(crate) fn account_to(a: ServiceAccountRecord) -> wire::ServiceAccount {
    wire::ServiceAccount {
        id: a.id,
        folder_id: a.folder_id,
        name: a.name,
        description: a.description,
        created_at: a.created_at,
    }
}

pub(crate) fn key_to(k: &ServiceAccountKeyRecord) -> wire::ServiceAccountKey {
    wire::ServiceAccountKey {
        id: k.id.clone(),
        service_account_id: k.service_account_id.clone(),
        description: k.description.clone(),
        created_at: k.created_at,
        public_key_pem: public_key_pem(&k.public_key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_code_and_the_recorded_code_name_agree() {
        let m = String::new;
        for e in [
            LockboxError::InvalidArgument(m()),
            LockboxError::NotFound(m()),
            LockboxError::AlreadyExists(m()),
            LockboxError::PermissionDenied(m()),
            LockboxError::Unauthenticated(m()),
            LockboxError::FailedPrecondition(m()),
            LockboxError::ResourceExhausted(m()),
            LockboxError::Unavailable(m()),
            LockboxError::Internal(m()),
        ] {
            assert_eq!(e.code().as_str(), e.code_name(), "{e:?}");
        }
    }
}
