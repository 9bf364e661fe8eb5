//! The Unix-socket front-end of `lockboxd`: identifies each connection, decodes requests,
//! calls the service and encodes its answers. Knows nothing about storage.

use crate::error::LockboxError;
use crate::service::{
    BindingUpdate, Caller, Done, Lockbox, NewSecret, NewVersion, PayloadRead, ReadMemo,
};
use crate::wire;
use lockbox_proto::hello::Service;
use lockbox_proto::lockbox::{
    GetPayloadRef, LockboxRequest, LockboxResponse, PayloadHead, SecretRef,
};
use lockbox_proto::{Error, Principal};
use lockbox_rpc::peer::{self, PeerCred};
use lockbox_rpc::server::{Handler, decode_request, respond, respond_with};
use std::sync::Arc;

/// Serves a [`Lockbox`] over the lockbox protocol.
#[derive(Debug)]
pub struct LockboxHandler {
    /// The service.
    lockbox: Arc<Lockbox>,
    /// Largest frame sent.
    max_frame: u32,
}

impl LockboxHandler {
    /// A handler for `lockbox`.
    pub fn new(lockbox: Arc<Lockbox>, max_frame: u32) -> Self {
        Self { lockbox, max_frame }
    }
}

/// A connection: the local user the kernel reported, and the service account it switched
/// to with a token, if it did.
#[derive(Debug)]
pub struct Session {
    /// From SO_PEERCRED.
    local: Caller,
    /// Set once by `Authenticate`.
    service_account: std::sync::OnceLock<Caller>,
    /// The last payload read by id, for the next one (forgotten when the caller changes).
    memo: ReadMemo,
}

impl Session {
    /// Who the connection's requests act as.
    fn caller(&self) -> &Caller {
        self.service_account.get().unwrap_or(&self.local)
    }
}

impl Handler for LockboxHandler {
    type Session = Session;

    fn service(&self) -> Service {
        Service::Lockbox
    }

    fn open(&self, cred: PeerCred) -> Result<Session, Error> {
        let id = peer::resolve(&cred);
        tracing::debug!(subject = %id.subject, pid = ?cred.pid, "connection opened");
        Ok(Session {
            local: Caller {
                principal: Principal {
                    subject: id.subject,
                    groups: id.groups,
                },
            },
            service_account: std::sync::OnceLock::new(),
            memo: ReadMemo::default(),
        })
    }

    fn subject(&self, session: &Session) -> String {
        session.local.subject().to_owned()
    }

    async fn call(&self, session: &Session, body: &[u8], out: &mut Vec<u8>) {
        let caller = session.caller();
        // The most frequent request is read in place, its ids borrowed from the frame.
        if let Some((id, get)) = GetPayloadRef::parse(body) {
            let read = self
                .lockbox
                .get_payload_remembered(caller, get.secret_id, get.version_id, &session.memo)
                .await;
            return respond_payload(out, id, read, self.max_frame);
        }
        let request = match decode_request::<LockboxRequest>(body) {
            Ok(r) => r,
            Err((id, e)) => return respond::<()>(out, id, Err(e), self.max_frame),
        };
        let result = match request.body {
            _ if request.on_behalf_of.is_some() => Err(LockboxError::PermissionDenied(
                "lockboxd does not accept requests on behalf of other subjects".into(),
            )),
            LockboxRequest::Authenticate { token } => authenticate(&self.lockbox, session, &token),
            LockboxRequest::GetPayload {
                secret_id,
                version_id,
            } => {
                let read = self
                    .lockbox
                    .get_payload(caller, &secret_id, version_id.as_deref())
                    .await;
                return respond_payload(out, request.id, read, self.max_frame);
            }
            LockboxRequest::GetPayloadEx { secret, version_id } => {
                let read = get_payload_ex(&self.lockbox, caller, secret, version_id).await;
                return respond_payload(out, request.id, read, self.max_frame);
            }
            body => dispatch(&self.lockbox, caller, body).await,
        };
        respond(
            out,
            request.id,
            result.map_err(|e| Error::from(&e)),
            self.max_frame,
        );
    }
}

/// Answers a payload read, decrypting the entries straight into the answer.
fn respond_payload(
    out: &mut Vec<u8>,
    id: u64,
    read: Result<PayloadRead, LockboxError>,
    max_frame: u32,
) {
    let written = read.and_then(|read| {
        let head = PayloadHead {
            secret_id: read.secret_id(),
            version_id: read.version_id(),
        };
        respond_with(
            out,
            id,
            max_frame,
            |body| head.append_response(id, body),
            |body| read.write_entries(body),
        )
    });
    if let Err(e) = written {
        respond::<()>(out, id, Err(Error::from(&e)), max_frame);
    }
}

/// `GetPayloadEx`: the secret named by id, or by folder and name.
async fn get_payload_ex(
    lockbox: &Lockbox,
    caller: &Caller,
    secret: SecretRef,
    version_id: Option<String>,
) -> Result<PayloadRead, LockboxError> {
    let version_id = version_id.as_deref();
    match secret {
        SecretRef::Id(id) => lockbox.get_payload(caller, &id, version_id).await,
        SecretRef::FolderAndName { folder_id, name } => {
            lockbox
                .get_payload_by_name(caller, &folder_id, &name, version_id)
                .await
        }
        _ => Err(LockboxError::InvalidArgument(
            "secret: unknown reference kind".into(),
        )),
    }
}

/// Switches the connection to the service account a token names, once.
fn authenticate(
    lockbox: &Lockbox,
    session: &Session,
    token: &str,
) -> Result<LockboxResponse, LockboxError> {
    if session.service_account.get().is_some() {
        return Err(LockboxError::FailedPrecondition(
            "this connection already acts as a service account".into(),
        ));
    }
    let caller = lockbox.authenticate(token)?;
    let subject = caller.subject().to_owned();
    session
        .service_account
        .set(caller)
        .map_err(|_| LockboxError::FailedPrecondition("authenticated concurrently".into()))?;
    // What the local user was allowed to read says nothing about the account.
    session.memo.forget();
    Ok(LockboxResponse::Authenticated { subject })
}

fn operation(done: Done) -> LockboxResponse {
    LockboxResponse::Operation(Box::new(wire::operation_to(done.operation)))
}

async fn dispatch(
    lockbox: &Lockbox,
    caller: &Caller,
    request: LockboxRequest,
) -> Result<LockboxResponse, LockboxError> {
    use LockboxRequest as R;
    use LockboxResponse as A;
    Ok(match request {
        R::GetSecret { secret_id } => {
            let (s, v) = lockbox.get_secret(caller, &secret_id)?;
            A::Secret(Box::new(wire::secret_to(s, v)))
        }
        R::ListSecrets { folder_id, page } => {
            let listed =
                lockbox.list_secrets(caller, &folder_id, page.page_size, &page.page_token)?;
            A::Secrets {
                secrets: listed
                    .items
                    .into_iter()
                    .map(|(s, v)| wire::secret_to(s, v))
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
                entries: wire::changes_from(c.version_payload_entries)?,
                deletion_protection: c.deletion_protection,
                password_spec: c.password_payload_specification.map(wire::password_from),
            };
            let (_, _, done) = lockbox.create_secret(caller, new).await?;
            operation(done)
        }
        R::UpdateSecret(u) => {
            let id = u.secret_id.clone();
            operation(
                lockbox
                    .update_secret(caller, &id, wire::secret_update_from(u)?)
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
                versions: listed.items.into_iter().map(wire::version_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::AddVersion(a) => {
            let new = NewVersion {
                description: a.description,
                changes: wire::changes_from(a.payload_entries)?,
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
        R::ListOperations { secret_id, page } => {
            let listed =
                lockbox.list_operations(caller, &secret_id, page.page_size, &page.page_token)?;
            A::Operations {
                operations: listed.items.into_iter().map(wire::operation_to).collect(),
                next_page_token: listed.next_page_token,
            }
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
        R::GetCloud { cloud_id } => A::Cloud(Box::new(wire::cloud_to(
            lockbox.get_cloud(caller, &cloud_id)?,
        ))),
        R::ListClouds { page } => {
            let listed = lockbox.list_clouds(caller, page.page_size, &page.page_token)?;
            A::Clouds {
                clouds: listed.items.into_iter().map(wire::cloud_to).collect(),
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
        R::GetFolder { folder_id } => A::Folder(Box::new(wire::folder_to(
            lockbox.get_folder(caller, &folder_id)?,
        ))),
        R::ListFolders { cloud_id, page } => {
            let listed =
                lockbox.list_folders(caller, &cloud_id, page.page_size, &page.page_token)?;
            A::Folders {
                folders: listed.items.into_iter().map(wire::folder_to).collect(),
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
            let resource = wire::resource_from(resource)?;
            let listed = lockbox.list_access_bindings(
                caller,
                &resource,
                page.page_size,
                &page.page_token,
            )?;
            A::AccessBindings {
                bindings: listed.items.into_iter().map(wire::binding_to).collect(),
                next_page_token: listed.next_page_token,
            }
        }
        R::SetAccessBindings { resource, bindings } => {
            let resource = wire::resource_from(resource)?;
            let update = BindingUpdate::Set(bindings.into_iter().map(wire::binding_from).collect());
            operation(
                lockbox
                    .update_access_bindings(caller, &resource, update)
                    .await?,
            )
        }
        R::UpdateAccessBindings { resource, deltas } => {
            let resource = wire::resource_from(resource)?;
            let deltas = deltas
                .into_iter()
                .map(wire::delta_from)
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
        } => A::ServiceAccount(Box::new(wire::account_to(
            lockbox
                .create_service_account(caller, &folder_id, &name, &description)
                .await?,
        ))),
        R::GetServiceAccount { service_account_id } => A::ServiceAccount(Box::new(
            wire::account_to(lockbox.get_service_account(caller, &service_account_id)?),
        )),
        R::ListServiceAccounts { folder_id, page } => {
            let listed = lockbox.list_service_accounts(
                caller,
                &folder_id,
                page.page_size,
                &page.page_token,
            )?;
            A::ServiceAccounts {
                service_accounts: listed.items.into_iter().map(wire::account_to).collect(),
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
                key: Box::new(wire::key_to(&new.record)),
                private_key_pem: lockbox_proto::SecretBytes::new(
                    new.private_key_pem.as_bytes().to_vec(),
                ),
            }
        }
        R::ListServiceAccountKeys { service_account_id } => A::ServiceAccountKeys {
            keys: lockbox
                .list_service_account_keys(caller, &service_account_id)?
                .iter()
                .map(wire::key_to)
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
        _ => {
            return Err(LockboxError::InvalidArgument(
                "request kind not supported by this lockboxd".into(),
            ));
        }
    })
}
