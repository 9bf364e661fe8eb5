//! Hand-written conversions between `proto` messages and the service's domain types. The only
//! place where the two meet.

use crate::crypto::Algorithm;
use crate::error::KmsError;
use crate::model::{Binding, KeyMeta, KeyStatus, Resource, VersionStatus};
use crate::service::{KeyUpdate, SymmetricKeyInfo, VersionInfo};
use lockbox_proto::common;
use lockbox_proto::kms as wire;

pub(crate) fn algorithm_from(a: wire::SymmetricAlgorithm) -> Result<Algorithm, KmsError> {
    match a {
        wire::SymmetricAlgorithm::Aes128 => Ok(Algorithm::Aes128),
        wire::SymmetricAlgorithm::Aes192 => Ok(Algorithm::Aes192),
        wire::SymmetricAlgorithm::Aes256 => Ok(Algorithm::Aes256),
        _ => Err(KmsError::InvalidArgument("algorithm: not supported".into())),
    }
}

fn algorithm_to(a: Algorithm) -> wire::SymmetricAlgorithm {
    match a {
        Algorithm::Aes128 => wire::SymmetricAlgorithm::Aes128,
        Algorithm::Aes192 => wire::SymmetricAlgorithm::Aes192,
        Algorithm::Aes256 => wire::SymmetricAlgorithm::Aes256,
    }
}

fn status_to(s: KeyStatus) -> wire::KeyStatus {
    match s {
        KeyStatus::Creating => wire::KeyStatus::Creating,
        KeyStatus::Active => wire::KeyStatus::Active,
        KeyStatus::Inactive => wire::KeyStatus::Inactive,
    }
}

fn status_from(s: wire::KeyStatus) -> Result<KeyStatus, KmsError> {
    match s {
        wire::KeyStatus::Active => Ok(KeyStatus::Active),
        wire::KeyStatus::Inactive => Ok(KeyStatus::Inactive),
        _ => Err(KmsError::InvalidArgument(
            "status: may only be set to ACTIVE or INACTIVE".into(),
        )),
    }
}

fn version_status_to(s: VersionStatus) -> wire::VersionStatus {
    match s {
        VersionStatus::Active => wire::VersionStatus::Active,
        VersionStatus::ScheduledForDestruction => wire::VersionStatus::ScheduledForDestruction,
        VersionStatus::Destroyed => wire::VersionStatus::Destroyed,
    }
}

pub(crate) fn version_to(v: VersionInfo) -> wire::SymmetricKeyVersion {
    wire::SymmetricKeyVersion {
        id: v.id,
        key_id: v.key_id,
        status: version_status_to(v.status),
        algorithm: algorithm_to(v.algorithm),
        created_at: v.created_at,
        primary: v.primary,
        destroy_at: v.destroy_at,
    }
}

pub(crate) fn symmetric_key_to(k: SymmetricKeyInfo) -> wire::SymmetricKey {
    wire::SymmetricKey {
        id: k.meta.id,
        folder_id: k.meta.folder_id,
        created_at: k.meta.created_at,
        name: k.meta.name,
        description: k.meta.description,
        labels: k.meta.labels,
        status: status_to(k.meta.status),
        default_algorithm: algorithm_to(k.default_algorithm),
        primary_version: version_to(k.primary_version),
        rotation_period: k.rotation_period,
        rotated_at: k.rotated_at,
        deletion_protection: k.meta.deletion_protection,
    }
}

pub(crate) fn signature_key_to(m: KeyMeta) -> wire::AsymmetricSignatureKey {
    wire::AsymmetricSignatureKey {
        id: m.id,
        folder_id: m.folder_id,
        created_at: m.created_at,
        name: m.name,
        description: m.description,
        labels: m.labels,
        status: status_to(m.status),
        signature_algorithm: wire::SignatureAlgorithm::EcdsaNistP256Sha256,
        deletion_protection: m.deletion_protection,
    }
}

pub(crate) fn resource_from(r: wire::ResourceRef) -> Result<Resource, KmsError> {
    match r {
        wire::ResourceRef::Root => Ok(Resource::Root),
        wire::ResourceRef::Folder(id) => Ok(Resource::Folder(id)),
        wire::ResourceRef::Key(id) => Ok(Resource::Key(id)),
        _ => Err(KmsError::InvalidArgument("resource: unknown kind".into())),
    }
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

pub(crate) fn delta_from(d: common::AccessBindingDelta) -> Result<(bool, Binding), KmsError> {
    let add = match d.action {
        common::AccessBindingAction::Add => true,
        common::AccessBindingAction::Remove => false,
        _ => return Err(KmsError::InvalidArgument("action: unknown".into())),
    };
    Ok((add, binding_from(d.binding)))
}

/// Turns an update mask and the fields it names into a [`KeyUpdate`].
pub(crate) fn key_update_from(u: wire::UpdateSymmetricKey) -> Result<KeyUpdate, KmsError> {
    if u.update_mask.is_empty() {
        return Err(KmsError::InvalidArgument(
            "update_mask: name at least one field to change".into(),
        ));
    }
    let mut update = KeyUpdate::default();
    for field in &u.update_mask {
        match field.as_str() {
            "name" => update.name = Some(u.name.clone()),
            "description" => update.description = Some(u.description.clone()),
            "labels" => update.labels = Some(u.labels.clone()),
            "status" => update.status = Some(status_from(u.status)?),
            "default_algorithm" => {
                update.default_algorithm = Some(algorithm_from(u.default_algorithm)?)
            }
            "rotation_period" => update.rotation_period = Some(u.rotation_period),
            "deletion_protection" => update.deletion_protection = Some(u.deletion_protection),
            other => {
                return Err(KmsError::InvalidArgument(format!(
                    "update_mask: unknown field {other:?}; known: name, description, labels, \
                     status, default_algorithm, rotation_period, deletion_protection"
                )));
            }
        }
    }
    Ok(update)
}
