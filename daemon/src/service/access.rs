//! Access to stored resources: every call is checked against the caller's bindings on the
//! resource and its ancestors (indexed by `iam::bindings`), and bindings are listed and
//! changed here.
//!
//! Bindings are cached in memory (they are read on every request and change rarely); the
//! cache is replaced under the writer lock after each committed change.

use super::{Caller, Done, Lockbox};
use crate::error::LockboxError;
use crate::iam::bindings::{ResourceBindings, allows};
use crate::iam::roles::{Permission, is_owner_role, role_grants, validate_binding};
use crate::model::{Binding, OperationOutcome, Resource, SecretRecord, validate};
use crate::store::Batch;
use crate::store::records::Listed;
use std::collections::BTreeSet;

/// Most bindings changed by one call.
pub const MAX_DELTAS: usize = 1000;

/// A change to a resource's bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingUpdate {
    /// Replace them all.
    Set(Vec<Binding>),
    /// Add (`true`) or remove (`false`), in order.
    Deltas(Vec<(bool, Binding)>),
}

impl Lockbox {
    /// The resource and its ancestors, nearest first.
    pub(super) fn chain(&self, resource: &Resource) -> Result<Vec<Resource>, LockboxError> {
        let not_found = |what: String| LockboxError::NotFound(format!("{what} not found"));
        let mut chain = vec![resource.clone()];
        let cloud_id = match resource {
            Resource::Organization(_) => return Ok(chain),
            Resource::Cloud(id) => id.clone(),
            Resource::Folder(id) => {
                let folder = self
                    .records
                    .folder(id)?
                    .ok_or_else(|| not_found(resource.to_string()))?;
                chain.push(Resource::Cloud(folder.cloud_id.clone()));
                folder.cloud_id
            }
            Resource::Secret(id) => {
                let secret = self
                    .records
                    .secret(id)?
                    .ok_or_else(|| not_found(resource.to_string()))?;
                chain.push(Resource::Folder(secret.folder_id));
                chain.push(Resource::Cloud(secret.cloud_id.clone()));
                secret.cloud_id
            }
        };
        let organization_id = self
            .organization_of(&cloud_id)?
            .ok_or_else(|| not_found(format!("cloud {cloud_id}")))?;
        chain.push(Resource::Organization(organization_id));
        Ok(chain)
    }

    /// The organization a cloud belongs to, remembered after the first lookup: a cloud never
    /// moves, and there are few of them.
    fn organization_of(&self, cloud_id: &str) -> Result<Option<String>, LockboxError> {
        if let Some(org) = self
            .cloud_orgs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(cloud_id)
        {
            return Ok(Some(org.clone()));
        }
        let Some(cloud) = self.records.cloud(cloud_id)? else {
            return Ok(None);
        };
        self.cloud_orgs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cloud.id, cloud.organization_id.clone());
        Ok(Some(cloud.organization_id))
    }

    /// The chain of a secret already read.
    pub(super) fn secret_chain(
        &self,
        secret: &SecretRecord,
    ) -> Result<Vec<Resource>, LockboxError> {
        let organization_id = self.organization_of(&secret.cloud_id)?.ok_or_else(|| {
            LockboxError::Internal(format!(
                "cloud {} of secret {} is missing",
                secret.cloud_id, secret.id
            ))
        })?;
        Ok(vec![
            Resource::Secret(secret.id.clone()),
            Resource::Folder(secret.folder_id.clone()),
            Resource::Cloud(secret.cloud_id.clone()),
            Resource::Organization(organization_id),
        ])
    }

    /// Whether `caller` holds `permission` through a binding anywhere on `chain`.
    pub(super) fn allowed(
        &self,
        caller: &Caller,
        chain: &[Resource],
        permission: Permission,
    ) -> bool {
        let bindings = self.bindings.read().unwrap_or_else(|p| p.into_inner());
        allows(&bindings, &caller.principal, chain, permission)
    }

    /// Every role `caller` holds, on any resource (for its rate limits).
    pub(super) fn roles_held(&self, caller: &Caller) -> Vec<String> {
        let bindings = self.bindings.read().unwrap_or_else(|p| p.into_inner());
        let mut roles: Vec<String> = bindings
            .values()
            .flat_map(|rb| rb.roles_of(&caller.principal))
            .map(str::to_owned)
            .collect();
        roles.sort_unstable();
        roles.dedup();
        roles
    }

    /// `PermissionDenied` naming the permission and the resource unless `caller` holds it.
    pub(super) fn authorize(
        &self,
        caller: &Caller,
        chain: &[Resource],
        permission: Permission,
    ) -> Result<(), LockboxError> {
        if self.allowed(caller, chain, permission) {
            return Ok(());
        }
        let resource = chain.first().map(ToString::to_string).unwrap_or_default();
        if permission != Permission::GetPayload {
            self.audit_denial(caller, permission.name(), &resource);
        }
        Err(LockboxError::PermissionDenied(format!(
            "permission {} denied on {resource} for {}",
            permission.name(),
            caller.subject()
        )))
    }

    /// `PermissionDenied` unless `caller` may maintain the service: `lockbox.service.manage`
    /// on the organization.
    pub(super) fn authorize_service(&self, caller: &Caller) -> Result<(), LockboxError> {
        let org = Resource::Organization(self.defaults.organization_id.clone());
        self.authorize(caller, &[org], Permission::ManageService)
    }

    /// Checks `permission` on a secret.
    pub(super) fn authorize_secret(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        permission: Permission,
    ) -> Result<(), LockboxError> {
        self.authorize(caller, &self.secret_chain(secret)?, permission)
    }

    pub(super) fn check_resource_id(resource: &Resource) -> Result<(), LockboxError> {
        let (field, id) = match resource {
            Resource::Organization(id) => ("organization_id", id),
            Resource::Cloud(id) => ("cloud_id", id),
            Resource::Folder(id) => ("folder_id", id),
            Resource::Secret(id) => ("secret_id", id),
        };
        validate::id(field, id)
    }

    /// The bindings a deletion takes with it: every list that changes when `resource`'s
    /// own bindings go and `subject` (a deleted account) is taken out of every other
    /// resource's, with its new contents (empty: deleted). Computed under the writer lock;
    /// [`put_binding_changes`](Self::put_binding_changes) writes them into the deletion's
    /// batch and [`install_binding_changes`](Self::install_binding_changes) into the cache
    /// once it is applied.
    pub(super) fn bindings_going_with(
        &self,
        resource: Option<&Resource>,
        subject: Option<&str>,
    ) -> Vec<(Resource, Vec<Binding>)> {
        let cache = self.bindings.read().unwrap_or_else(|p| p.into_inner());
        let mut changes = Vec::new();
        if let Some(resource) = resource
            && cache.contains_key(resource)
        {
            changes.push((resource.clone(), Vec::new()));
        }
        if let Some(subject) = subject {
            for (r, rb) in cache.iter() {
                if Some(r) == resource || !rb.list().iter().any(|b| b.subject == subject) {
                    continue;
                }
                let kept = rb
                    .list()
                    .iter()
                    .filter(|b| b.subject != subject)
                    .cloned()
                    .collect();
                changes.push((r.clone(), kept));
            }
        }
        changes
    }

    /// Adds `changes` (from [`bindings_going_with`](Self::bindings_going_with)) to `batch`.
    pub(super) fn put_binding_changes(
        &self,
        batch: &mut Batch,
        changes: &[(Resource, Vec<Binding>)],
    ) {
        for (resource, list) in changes {
            self.records.put_bindings(batch, resource, list);
        }
    }

    /// Puts applied `changes` into the bindings cache; under the writer lock.
    pub(super) fn install_binding_changes(&self, changes: Vec<(Resource, Vec<Binding>)>) {
        let mut cache = self.bindings.write().unwrap_or_else(|p| p.into_inner());
        for (resource, list) in changes {
            if list.is_empty() {
                cache.remove(&resource);
            } else {
                cache.insert(resource, ResourceBindings::new(list));
            }
        }
    }

    /// Bindings attached directly to `resource`.
    pub fn list_access_bindings(
        &self,
        caller: &Caller,
        resource: &Resource,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<Binding>, LockboxError> {
        Self::check_resource_id(resource)?;
        let size = validate::page_size(page_size)?;
        let chain = self.chain(resource)?;
        self.authorize(caller, &chain, Permission::ListAccessBindings)?;
        let all = self
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .map(|rb| rb.list().to_vec())
            .unwrap_or_default();
        let start = if page_token.is_empty() {
            0
        } else {
            page_token.parse::<usize>().map_err(|_| {
                LockboxError::InvalidArgument("page_token: not a token from this list".into())
            })?
        };
        let items: Vec<Binding> = all.iter().skip(start).take(size).cloned().collect();
        let end = start + items.len();
        Ok(Listed {
            items,
            next_page_token: if end < all.len() {
                end.to_string()
            } else {
                String::new()
            },
        })
    }

    /// Whether `caller` may grant `role` on `chain`: it needs every permission the role
    /// carries, and only owners grant owner roles.
    pub(super) fn may_grant(&self, caller: &Caller, chain: &[Resource], role: &str) -> bool {
        if is_owner_role(role) {
            let bindings = self.bindings.read().unwrap_or_else(|p| p.into_inner());
            return chain.iter().any(|r| {
                bindings
                    .get(r)
                    .is_some_and(|rb| rb.roles_of(&caller.principal).any(is_owner_role))
            });
        }
        Permission::ALL
            .iter()
            .filter(|p| role_grants(role, **p))
            .all(|p| self.allowed(caller, chain, *p))
    }

    /// Replaces or edits the bindings attached to `resource`.
    pub async fn update_access_bindings(
        &self,
        caller: &Caller,
        resource: &Resource,
        update: BindingUpdate,
    ) -> Result<Done, LockboxError> {
        Self::check_resource_id(resource)?;
        let touched: Vec<&Binding> = match &update {
            BindingUpdate::Set(list) => list.iter().collect(),
            BindingUpdate::Deltas(d) => d.iter().map(|(_, b)| b).collect(),
        };
        if touched.len() > MAX_DELTAS {
            return Err(LockboxError::InvalidArgument(format!(
                "access_binding_deltas: at most {MAX_DELTAS} per call, got {}",
                touched.len()
            )));
        }
        for b in &touched {
            validate_binding(b)?;
        }
        let writer = self.write_lock().await;
        let chain = self.chain(resource)?;
        self.authorize(caller, &chain, Permission::SetAccessBindings)?;
        let current: BTreeSet<Binding> = self
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .map(|rb| rb.list().iter().cloned().collect())
            .unwrap_or_default();
        let next: BTreeSet<Binding> = match update {
            BindingUpdate::Set(list) => list.into_iter().collect(),
            BindingUpdate::Deltas(deltas) => {
                let mut next = current.clone();
                for (add, b) in deltas {
                    if add {
                        next.insert(b);
                    } else {
                        next.remove(&b);
                    }
                }
                next
            }
        };
        // Granting and revoking a role both need the reach of that role.
        for b in current.symmetric_difference(&next) {
            if !self.may_grant(caller, &chain, &b.role) {
                return Err(LockboxError::PermissionDenied(format!(
                    "{} may not grant or revoke {} on {resource}: it is beyond the caller's own roles",
                    caller.subject(),
                    b.role
                )));
            }
        }
        let next: Vec<Binding> = next.into_iter().collect();
        let mut batch = Batch::default();
        self.records.put_bindings(&mut batch, resource, &next);
        let id = match resource {
            Resource::Organization(id)
            | Resource::Cloud(id)
            | Resource::Folder(id)
            | Resource::Secret(id) => id.clone(),
        };
        let done = self.record(
            &mut batch,
            caller,
            "Update access bindings",
            &id,
            OperationOutcome::Empty,
        )?;
        // Into the cache under the writer lock, so the next mutation sees these bindings.
        self.commit_then(writer, batch, || {
            self.install_binding_changes(vec![(resource.clone(), next)]);
        })
        .await?;
        tracing::info!(%resource, subject = caller.subject(), "access bindings changed");
        Ok(done)
    }
}
