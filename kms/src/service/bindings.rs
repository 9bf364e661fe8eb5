//! Listing and changing access bindings. Only `kms.admin` (on the resource or above) changes
//! them.

use super::{Caller, Kms, Page, Snapshot, page_by_offset};
use crate::access::{Permission, validate_binding};
use crate::error::KmsError;
use crate::model::{Binding, Resource};
use crate::validate;
use std::collections::BTreeSet;

/// Most deltas in one `update_access_bindings` call.
pub const MAX_DELTAS: usize = 1000;

/// A change to the bindings of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingUpdate {
    /// Replace all bindings.
    Set(Vec<Binding>),
    /// Add (`true`) or remove (`false`) bindings, in order.
    Deltas(Vec<(bool, Binding)>),
}

impl Kms {
    fn authorize_resource(
        snap: &Snapshot,
        caller: &Caller<'_>,
        resource: &Resource,
        permission: Permission,
    ) -> Result<(), KmsError> {
        match resource {
            Resource::Root => {
                if snap.bindings.allows_on_root(caller.principal, permission) {
                    Ok(())
                } else {
                    Err(KmsError::PermissionDenied {
                        permission: permission.name(),
                        resource: "the KMS root".into(),
                        subject: caller.principal.subject.to_owned(),
                    })
                }
            }
            Resource::Folder(folder) => {
                validate::folder_id(folder)?;
                Self::authorize(snap, caller, None, folder, permission)
            }
            Resource::Key(key) => {
                validate::id("key_id", key)?;
                let folder = snap
                    .state
                    .folder_of(key)
                    .ok_or_else(|| KmsError::NotFound(format!("key {key} not found")))?;
                Self::authorize(snap, caller, Some(key), folder, permission)
            }
        }
    }

    /// `PermissionDenied` unless `caller` holds `kms.admin` (the right to change bindings)
    /// wherever `subject` has a binding: whoever may act as the subject gets those roles,
    /// so only someone who could have granted them may.
    pub fn check_may_act_as(&self, caller: &Caller<'_>, subject: &str) -> Result<(), KmsError> {
        let snap = self.snapshot();
        for (resource, bindings) in &snap.state.bindings {
            if bindings.iter().any(|b| b.subject == subject) {
                Self::authorize_resource(&snap, caller, resource, Permission::UpdateAccessBindings)
                    .map_err(|e| match e {
                        KmsError::PermissionDenied {
                            resource,
                            subject: who,
                            ..
                        } => KmsError::MayNotActAs {
                            subject: subject.to_owned(),
                            resource,
                            caller: who,
                        },
                        other => other,
                    })?;
            }
        }
        Ok(())
    }

    /// Bindings attached directly to `resource`.
    pub fn list_access_bindings(
        &self,
        caller: &Caller<'_>,
        resource: &Resource,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Binding>, KmsError> {
        let snap = self.snapshot();
        Self::authorize_resource(&snap, caller, resource, Permission::ListAccessBindings)?;
        let bindings = snap
            .state
            .bindings
            .get(resource)
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        page_by_offset(bindings, page_size, page_token)
    }

    /// Replaces or edits the bindings attached to `resource`.
    pub async fn update_access_bindings(
        &self,
        caller: &Caller<'_>,
        resource: &Resource,
        update: BindingUpdate,
    ) -> Result<(), KmsError> {
        let bindings_to_check: Vec<&Binding> = match &update {
            BindingUpdate::Set(list) => list.iter().collect(),
            BindingUpdate::Deltas(deltas) => {
                if deltas.len() > MAX_DELTAS {
                    return Err(KmsError::InvalidArgument(format!(
                        "access_binding_deltas: at most {MAX_DELTAS} per call, got {}",
                        deltas.len()
                    )));
                }
                deltas.iter().map(|(_, b)| b).collect()
            }
        };
        if bindings_to_check.len() > MAX_DELTAS {
            return Err(KmsError::InvalidArgument(format!(
                "access_bindings: at most {MAX_DELTAS} per call, got {}",
                bindings_to_check.len()
            )));
        }
        for b in bindings_to_check {
            validate_binding(b)?;
        }
        self.mutate(|snap, state, _| {
            Self::authorize_resource(snap, caller, resource, Permission::UpdateAccessBindings)?;
            let entry = state.bindings.entry(resource.clone()).or_default();
            match update {
                BindingUpdate::Set(list) => *entry = list.into_iter().collect::<BTreeSet<_>>(),
                BindingUpdate::Deltas(deltas) => {
                    for (add, binding) in deltas {
                        if add {
                            entry.insert(binding);
                        } else {
                            entry.remove(&binding);
                        }
                    }
                }
            }
            if entry.is_empty() {
                state.bindings.remove(resource);
            }
            tracing::info!(%resource, subject = caller.principal.subject, "access bindings changed");
            Ok(())
        })
        .await
    }
}
