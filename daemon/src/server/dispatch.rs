//! The requests answered by a decoded message: each converted to its service call, and the
//! result back to its answer.

use super::convert;
use crate::error::LockboxError;
use crate::service::{BindingUpdate, Caller, Done, Lockbox, NewSecret, NewVersion};
use lockbox_proto::common::Quota;
use lockbox_proto::lockbox::{BackupFile, LockboxRequest, LockboxResponse};

// The wire's promise and the service's cap are one number.
const _: () =
    assert!(lockbox_proto::lockbox::MAX_BACKUP_CHUNK as usize == crate::service::MAX_BACKUP_CHUNK);

fn operation(done: Done) -> LockboxResponse {
    LockboxResponse::Operation(Box::new(convert::operation_to(done.operation)))
}

/// A page of operations as the wire answers it.
fn operations_page(
    operations: Vec<crate::model::OperationRecord>,
    next_page_token: String,
) -> LockboxResponse {
    LockboxResponse::Operations {
        operations: operations.into_iter().map(convert::operation_to).collect(),
        next_page_token,
    }
}

/// Answers every request but the payload reads and `Authenticate`.
pub(super) async fn dispatch(
    lockbox: &Lockbox,
    caller: &Caller,
    request: LockboxRequest,
) -> Result<LockboxResponse, LockboxError> {
    use LockboxRequest as R;
    use LockboxResponse as A;
    Ok(match request {
        R::GetSecret { secret_id } => {
            let (s, v) = lockbox.get_secret(caller, &secret_id)?;
            A::Secret(Box::new(convert::secret_to(s, v)))
        }
        R::ListSecrets { folder_id, page } => {
            let listed =
                lockbox.list_secrets(caller, &folder_id, page.page_size, &page.page_token)?;
            A::Secrets {
                secrets: listed
                    .items
                    .into_iter()
                    .map(|(s, v)| convert::secret_to(s, v))
                    .collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::CreateSecret(c) => {
            let new = NewSecret {
                folder_id: c.folder_id,
                name: c.name,
                description: c.description,
                labels: c.labels,
                kms_key_id: (!c.kms_key_id.is_empty()).then_some(c.kms_key_id),
                version_description: c.version_description,
                entries: convert::changes_from(c.version_payload_entries)?,
                deletion_protection: c.deletion_protection,
                password_spec: c.password_payload_specification.map(convert::password_from),
            };
            let (_, _, done) = lockbox.create_secret(caller, new).await?;
            operation(done)
        }
        R::UpdateSecret(u) => {
            let id = u.secret_id.clone();
            operation(
                lockbox
                    .update_secret(caller, &id, convert::secret_update_from(u)?)
                    .await?,
            )
        }
        R::DeleteSecret { secret_id } => {
            operation(lockbox.delete_secret(caller, &secret_id).await?)
        }
        R::ActivateSecret { secret_id } => {
            operation(lockbox.activate_secret(caller, &secret_id).await?)
        }
        R::DeactivateSecret { secret_id } => {
            operation(lockbox.deactivate_secret(caller, &secret_id).await?)
        }
        R::ListVersions { secret_id, page } => {
            let listed =
                lockbox.list_versions(caller, &secret_id, page.page_size, &page.page_token)?;
            A::Versions {
                versions: listed.items.into_iter().map(convert::version_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::AddVersion(a) => {
            let new = NewVersion {
                description: a.description,
                changes: convert::changes_from(a.payload_entries)?,
                base_version_id: a.base_version_id,
            };
            operation(lockbox.add_version(caller, &a.secret_id, new).await?)
        }
        R::SetCurrentVersion {
            secret_id,
            version_id,
        } => operation(
            lockbox
                .set_current_version(caller, &secret_id, &version_id)
                .await?,
        ),
        R::ScheduleVersionDestruction {
            secret_id,
            version_id,
            pending_period,
        } => {
            let (_, done) = lockbox
                .schedule_version_destruction(caller, &secret_id, &version_id, pending_period)
                .await?;
            operation(done)
        }
        R::CancelVersionDestruction {
            secret_id,
            version_id,
        } => {
            let (_, done) = lockbox
                .cancel_version_destruction(caller, &secret_id, &version_id)
                .await?;
            operation(done)
        }
        R::ListResourceOperations { resource, page } => {
            let listed = lockbox.list_resource_operations(
                caller,
                &convert::resource_from(resource)?,
                page.page_size,
                &page.page_token,
            )?;
            operations_page(listed.items, listed.next_page_token)
        }
        R::ListQuotas { cloud_id } => {
            let quotas = lockbox.list_quotas(caller, &cloud_id)?;
            LockboxResponse::Quotas {
                cloud_id: quotas.cloud_id,
                quotas: quotas
                    .quotas
                    .into_iter()
                    .map(|q| Quota {
                        name: q.name.into(),
                        per: q.per.into(),
                        limit: q.limit,
                        usage: q.usage,
                        resource: q.resource,
                    })
                    .collect(),
            }
        }
        R::ListOperations { secret_id, page } => {
            let listed =
                lockbox.list_operations(caller, &secret_id, page.page_size, &page.page_token)?;
            operations_page(listed.items, listed.next_page_token)
        }
        R::CreateCloud {
            organization_id,
            name,
            description,
        } => {
            let (_, done) = lockbox
                .create_cloud(caller, &organization_id, &name, &description)
                .await?;
            operation(done)
        }
        R::GetCloud { cloud_id } => A::Cloud(Box::new(convert::cloud_to(
            lockbox.get_cloud(caller, &cloud_id)?,
        ))),
        R::ListClouds { page } => {
            let listed = lockbox.list_clouds(caller, page.page_size, &page.page_token)?;
            A::Clouds {
                clouds: listed.items.into_iter().map(convert::cloud_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::DeleteCloud { cloud_id } => operation(lockbox.delete_cloud(caller, &cloud_id).await?),
        R::CreateFolder {
            cloud_id,
            name,
            description,
        } => {
            let (_, done) = lockbox
                .create_folder(caller, &cloud_id, &name, &description)
                .await?;
            operation(done)
        }
        R::GetFolder { folder_id } => A::Folder(Box::new(convert::folder_to(
            lockbox.get_folder(caller, &folder_id)?,
        ))),
        R::ListFolders { cloud_id, page } => {
            let listed =
                lockbox.list_folders(caller, &cloud_id, page.page_size, &page.page_token)?;
            A::Folders {
                folders: listed.items.into_iter().map(convert::folder_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::DeleteFolder { folder_id } => {
            operation(lockbox.delete_folder(caller, &folder_id).await?)
        }
        R::DangerAdvanceClock { seconds } => A::ClockAdvanced {
            now: lockbox.advance_clock(caller, seconds).await?,
        },
        R::ListAccessBindings { resource, page } => {
            let resource = convert::resource_from(resource)?;
            let listed = lockbox.list_access_bindings(
                caller,
                &resource,
                page.page_size,
                &page.page_token,
            )?;
            A::AccessBindings {
                bindings: listed.items.into_iter().map(convert::binding_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::SetAccessBindings { resource, bindings } => {
            let resource = convert::resource_from(resource)?;
            let update =
                BindingUpdate::Set(bindings.into_iter().map(convert::binding_from).collect());
            operation(
                lockbox
                    .update_access_bindings(caller, &resource, update)
                    .await?,
            )
        }
        R::UpdateAccessBindings { resource, deltas } => {
            let resource = convert::resource_from(resource)?;
            let deltas = deltas
                .into_iter()
                .map(convert::delta_from)
                .collect::<Result<Vec<_>, _>>()?;
            operation(
                lockbox
                    .update_access_bindings(caller, &resource, BindingUpdate::Deltas(deltas))
                    .await?,
            )
        }
        R::CreateServiceAccount {
            folder_id,
            name,
            description,
        } => A::ServiceAccount(Box::new(convert::account_to(
            lockbox
                .create_service_account(caller, &folder_id, &name, &description)
                .await?,
        ))),
        R::GetServiceAccount { service_account_id } => A::ServiceAccount(Box::new(
            convert::account_to(lockbox.get_service_account(caller, &service_account_id)?),
        )),
        R::ListServiceAccounts { folder_id, page } => {
            let listed = lockbox.list_service_accounts(
                caller,
                &folder_id,
                page.page_size,
                &page.page_token,
            )?;
            A::ServiceAccounts {
                service_accounts: listed.items.into_iter().map(convert::account_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::DeleteServiceAccount { service_account_id } => {
            lockbox
                .delete_service_account(caller, &service_account_id)
                .await?;
            A::Done
        }
        R::CreateServiceAccountKey {
            service_account_id,
            description,
        } => {
            let new = lockbox
                .create_service_account_key(caller, &service_account_id, &description)
                .await?;
            A::ServiceAccountKeyCreated {
                key: Box::new(convert::key_to(&new.record)),
                private_key_pem: lockbox_proto::SecretBytes::new(
                    new.private_key_pem.as_bytes().to_vec(),
                ),
            }
        }
        R::ListServiceAccountKeys { service_account_id } => A::ServiceAccountKeys {
            keys: lockbox
                .list_service_account_keys(caller, &service_account_id)?
                .iter()
                .map(convert::key_to)
                .collect(),
        },
        R::DeleteServiceAccountKey {
            service_account_id,
            key_id,
        } => {
            lockbox
                .delete_service_account_key(caller, &service_account_id, &key_id)
                .await?;
            A::Done
        }
        R::BeginBackup => {
            let started = lockbox.begin_backup(caller).await?;
            A::BackupStarted(Box::new(lockbox_proto::lockbox::BackupStarted {
                backup_id: started.backup_id,
                schema: started.schema,
                created_at: started.created_at,
                keyring_kms_key_id: started.keyring_kms_key_id,
                files: started
                    .files
                    .into_iter()
                    .map(|f| BackupFile {
                        name: f.name,
                        size: f.size,
                        sha256: f.sha256,
                    })
                    .collect(),
            }))
        }
        R::ReadBackup {
            backup_id,
            file,
            offset,
            length,
        } => A::BackupChunk {
            bytes: lockbox
                .read_backup(caller, &backup_id, &file, offset, length)
                .await?,
        },
        R::EndBackup { backup_id } => {
            lockbox.end_backup(caller, &backup_id).await?;
            A::Done
        }
        R::RewrapKeyring => {
            let done = lockbox.rewrap_keyring(caller).await?;
            A::KeyringRewrapped {
                kms_key_id: done.kms_key_id,
                from_version_id: done.from_version_id,
                version_id: done.version_id,
            }
        }
        R::RewrapDataKeys { kms_key_id, limit } => {
            let done = lockbox.rewrap_data_keys(caller, &kms_key_id, limit).await?;
            A::DataKeysRewrapped {
                kms_key_id,
                rewrapped: done.rewrapped,
                remaining: done.remaining,
            }
        }
        _ => {
            return Err(LockboxError::InvalidArgument(
                "request kind not supported by this lockboxd".into(),
            ));
        }
    })
}
