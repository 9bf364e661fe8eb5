//! Secrets: create (with an optional first version and generated password), read, list,
//! update, delete, activate and deactivate.

use super::versions::{BaseVisible, EntryChange, apply_changes, validate_changes};
use super::{Caller, Done, Lockbox, WriterGuard, quotas};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::Resource;
use crate::model::ids::{self, new_id};
use crate::model::{
    Entry, OperationOutcome, PasswordSpec, SecretRecord, SecretStatus, VersionMeta,
};
use crate::model::{password, validate};
use crate::store::Batch;
use crate::store::records::Listed;
use std::collections::BTreeMap;

/// What `create_secret` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret {
    /// Folder; empty means the default folder.
    pub folder_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// KMS key for payload keys; `None` for the service keyring.
    pub kms_key_id: Option<String>,
    /// Description of the first version.
    pub version_description: String,
    /// Entries of the first version.
    pub entries: Vec<EntryChange>,
    /// Whether deletion is refused.
    pub deletion_protection: bool,
    /// Password generation.
    pub password_spec: Option<PasswordSpec>,
}

/// Changes for `update_secret`; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretUpdate {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// New deletion protection.
    pub deletion_protection: Option<bool>,
    /// New password specification (`Some(None)` removes it).
    pub password_spec: Option<Option<PasswordSpec>>,
}

fn validate_password_spec(spec: &PasswordSpec) -> Result<(), LockboxError> {
    validate::entry_key(&spec.password_key).map_err(|_| {
        LockboxError::InvalidArgument(format!(
            "password_payload_specification.password_key: {:?} is not a valid entry key",
            spec.password_key
        ))
    })?;
    password::classes(spec).map(|_| ())
}

impl Lockbox {
    fn check_name_free(
        &self,
        folder_id: &str,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), LockboxError> {
        if name.is_empty() {
            return Ok(());
        }
        match self.records.secret_id_by_name(folder_id, name)? {
            Some(id) if Some(id.as_str()) != except => Err(LockboxError::AlreadyExists(format!(
                "a secret named {name:?} already exists in folder {folder_id}"
            ))),
            _ => Ok(()),
        }
    }

    /// Creates a secret, with a first version when entries or a password specification are
    /// given.
    pub async fn create_secret(
        &self,
        caller: &Caller,
        new: NewSecret,
    ) -> Result<(SecretRecord, Option<VersionMeta>, Done), LockboxError> {
        validate::secret_name(&new.name)?;
        validate::description("description", &new.description)?;
        validate::description("version_description", &new.version_description)?;
        validate::labels(&new.labels)?;
        if let Some(k) = &new.kms_key_id {
            validate::kms_key_id(k)?;
        }
        if let Some(spec) = &new.password_spec {
            validate_password_spec(spec)?;
        }
        validate_changes(&new.entries)?;
        let folder = self.folder_or_default(&new.folder_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Folder(folder.id.clone()))?,
            Permission::Create,
        )?;
        self.check_name_free(&folder.id, &new.name, None)?;

        let mut secret = SecretRecord {
            id: new_id(ids::SECRET),
            folder_id: folder.id.clone(),
            cloud_id: folder.cloud_id.clone(),
            created_at: self.now(),
            name: new.name,
            description: new.description,
            labels: new.labels,
            kms_key_id: new.kms_key_id,
            status: SecretStatus::Active,
            current_version_id: None,
            deletion_protection: new.deletion_protection,
            password_spec: new.password_spec,
            version_count: 0,
        };
        let mut changes = new.entries;
        if let Some(spec) = &secret.password_spec {
            if changes
                .iter()
                .any(|c| matches!(c, EntryChange::Set(e) if e.key == spec.password_key))
            {
                return Err(LockboxError::InvalidArgument(format!(
                    "version_payload_entries: {:?} is the generated password's key",
                    spec.password_key
                )));
            }
            let generated = password::generate(spec)?;
            changes.push(EntryChange::Set(Entry {
                key: spec.password_key.clone(),
                text: true,
                value: generated.to_vec(),
            }));
        }
        let version = if changes.is_empty() {
            if let Some(key_id) = &secret.kms_key_id {
                // No version to seal yet: check now that the caller may encrypt with the key,
                // so a wrong key id or a missing KMS role fails here rather than later.
                self.kms
                    .encrypt(
                        Some(&caller.principal),
                        key_id,
                        b"lockbox create probe",
                        b"",
                    )
                    .await?;
            }
            None
        } else {
            // No base: every entry is the caller's own.
            let entries = apply_changes(
                Vec::new(),
                changes,
                self.limits.payload_bytes(&secret.cloud_id),
                BaseVisible::Yes,
            )?;
            Some(
                self.build_version(caller, &secret, new.version_description, entries)
                    .await?
                    .record,
            )
        };

        let writer = self.write_lock().await;
        // The folder or the caller's role may have gone while the first version was being
        // sealed: checked again under the writer lock, where both are the committed ones.
        let folder = self.folder_or_default(&secret.folder_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Folder(folder.id))?,
            Permission::Create,
        )?;
        self.check_name_free(&secret.folder_id, &secret.name, None)?;
        let count = self.records.secret_count(&secret.cloud_id)?;
        let limit = self.limits.secrets_per_cloud(&secret.cloud_id);
        if count >= limit {
            return Err(quotas::exceeded(
                quotas::SECRETS_COUNT,
                &format!("cloud {}", secret.cloud_id),
                count,
                limit,
            ));
        }
        let mut batch = Batch::default();
        if let Some(v) = &version {
            secret.current_version_id = Some(v.meta.id.clone());
            secret.version_count = 1;
            self.records.put_version(&mut batch, v);
        }
        self.records.put_secret(&mut batch, &secret, None);
        self.records
            .put_secret_count(&mut batch, &secret.cloud_id, count + 1);
        let meta = version.map(|v| v.meta);
        let outcome = OperationOutcome::Secret(Box::new(secret.clone()), meta.clone());
        let done = self.record(&mut batch, caller, "Create secret", &secret.id, outcome)?;
        self.commit(writer, batch).await?;
        tracing::info!(secret_id = %secret.id, subject = caller.subject(), "secret created");
        Ok((secret, meta, done))
    }

    /// A secret and its current version.
    pub fn get_secret(
        &self,
        caller: &Caller,
        secret_id: &str,
    ) -> Result<(SecretRecord, Option<VersionMeta>), LockboxError> {
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Get)?;
        let (secret, current) = self.secret_with_current(secret)?;
        Ok((secret, current.map(|m| self.visible(m))))
    }

    /// A folder's secrets (empty: the default folder), oldest first. Needs the right to read
    /// metadata on the folder (or above), which covers every secret in it: a role on one
    /// secret does not let its holder list the others, nor learn their ids from page
    /// tokens.
    pub fn list_secrets(
        &self,
        caller: &Caller,
        folder_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<(SecretRecord, Option<VersionMeta>)>, LockboxError> {
        validate::page_token(page_token)?;
        let size = validate::page_size(page_size)?;
        let folder = self.folder_or_default(folder_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Folder(folder.id.clone()))?,
            Permission::Get,
        )?;
        let page = self
            .records
            .secrets_in_folder(&folder.id, page_token, size)?;
        let items = page
            .items
            .into_iter()
            .map(|s| self.secret_with_current(s))
            .collect::<Result<_, _>>()?;
        Ok(Listed {
            items,
            next_page_token: page.next_page_token,
        })
    }

    /// Changes the fields set in `update`.
    pub async fn update_secret(
        &self,
        caller: &Caller,
        secret_id: &str,
        update: SecretUpdate,
    ) -> Result<Done, LockboxError> {
        if let Some(n) = &update.name {
            validate::secret_name(n)?;
        }
        if let Some(d) = &update.description {
            validate::description("description", d)?;
        }
        if let Some(l) = &update.labels {
            validate::labels(l)?;
        }
        if let Some(Some(spec)) = &update.password_spec {
            validate_password_spec(spec)?;
        }
        let writer = self.write_lock().await;
        let mut secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Update)?;
        let previous_name = secret.name.clone();
        if let Some(name) = update.name {
            self.check_name_free(&secret.folder_id, &name, Some(&secret.id))?;
            secret.name = name;
        }
        if let Some(v) = update.description {
            secret.description = v;
        }
        if let Some(v) = update.labels {
            secret.labels = v;
        }
        if let Some(v) = update.deletion_protection {
            secret.deletion_protection = v;
        }
        if let Some(v) = update.password_spec {
            secret.password_spec = v;
        }
        self.save_secret(writer, caller, secret, &previous_name, "Update secret")
            .await
    }

    /// Stores a changed secret with its operation record (the caller holds the writer lock).
    async fn save_secret(
        &self,
        writer: WriterGuard<'_>,
        caller: &Caller,
        secret: SecretRecord,
        previous_name: &str,
        description: &str,
    ) -> Result<Done, LockboxError> {
        let mut batch = Batch::default();
        self.records
            .put_secret(&mut batch, &secret, Some(previous_name));
        let (secret, current) = self.secret_with_current(secret)?;
        let id = secret.id.clone();
        let done = self.record(
            &mut batch,
            caller,
            description,
            &id,
            OperationOutcome::Secret(Box::new(secret), current),
        )?;
        self.commit(writer, batch).await?;
        Ok(done)
    }

    /// Sets a secret's status.
    async fn set_status(
        &self,
        caller: &Caller,
        secret_id: &str,
        status: SecretStatus,
    ) -> Result<Done, LockboxError> {
        let writer = self.write_lock().await;
        let mut secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Update)?;
        secret.status = status;
        let name = secret.name.clone();
        let description = match status {
            SecretStatus::Active => "Activate secret",
            SecretStatus::Inactive => "Deactivate secret",
        };
        self.save_secret(writer, caller, secret, &name, description)
            .await
    }

    /// Makes the payload readable again.
    pub async fn activate_secret(
        &self,
        caller: &Caller,
        secret_id: &str,
    ) -> Result<Done, LockboxError> {
        self.set_status(caller, secret_id, SecretStatus::Active)
            .await
    }

    /// Refuses payload reads until activated; metadata stays readable.
    pub async fn deactivate_secret(
        &self,
        caller: &Caller,
        secret_id: &str,
    ) -> Result<Done, LockboxError> {
        self.set_status(caller, secret_id, SecretStatus::Inactive)
            .await
    }

    /// Deletes a secret with all its versions and operations.
    pub async fn delete_secret(
        &self,
        caller: &Caller,
        secret_id: &str,
    ) -> Result<Done, LockboxError> {
        let writer = self.write_lock().await;
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Delete)?;
        if secret.deletion_protection {
            return Err(LockboxError::FailedPrecondition(format!(
                "secret {secret_id} has deletion protection; turn it off first"
            )));
        }
        let mut batch = Batch::default();
        self.records.delete_versions(&mut batch, &secret.id)?;
        self.records.delete_operations(&mut batch, &secret.id)?;
        self.records.delete_secret(&mut batch, &secret);
        let bindings = self.bindings_going_with(Some(&Resource::Secret(secret.id.clone())), None);
        self.put_binding_changes(&mut batch, &bindings);
        let count = self.records.secret_count(&secret.cloud_id)?;
        self.records
            .put_secret_count(&mut batch, &secret.cloud_id, count.saturating_sub(1));
        // The secret's operation log goes with it, so the deletion is answered, not stored.
        let done = Done {
            operation: crate::model::OperationRecord {
                id: new_id(ids::OPERATION),
                description: "Delete secret".into(),
                created_at: self.now(),
                created_by: caller.subject().to_owned(),
                resource_id: secret.id.clone(),
                outcome: OperationOutcome::Empty,
            },
        };
        // The audit trail keeps it, and the operations that went with the secret.
        self.audit_operation(caller, &done.operation)?;
        self.commit_then(writer, batch, || self.install_binding_changes(bindings))
            .await?;
        tracing::info!(secret_id, subject = caller.subject(), "secret deleted");
        Ok(done)
    }
}
