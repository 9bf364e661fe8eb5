//! Typed calls to `lockboxd`.

use lockbox_proto::common::{AccessBinding, AccessBindingDelta, Page, Quota};
use lockbox_proto::hello::Service;
use lockbox_proto::lockbox::{
    AddVersion, BackupStarted, Cloud, CreateSecret, Folder, GetPayloadRef, LockboxRequest,
    LockboxResource, LockboxResponse, Operation, Secret, SecretRef, ServiceAccount,
    ServiceAccountKey, UpdateSecret, Version,
};
use lockbox_proto::payload::{PayloadEntries, PayloadLayout, PayloadValueRef};
use lockbox_proto::token::LOCKBOXD_AUDIENCE;
use lockbox_proto::{ErrorCode, Wiping};
use lockbox_rpc::redial::{Prepare, Redial};
use lockbox_rpc::{CallError, Channel};
use serde::Serialize;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

/// A page of items and the token for the next (empty on the last page).
pub type Listed<T> = (Vec<T>, String);

/// A payload as read: the daemon's answer kept as it came, in one buffer wiped when the
/// payload is dropped, and read in place. No string or vector is made per id or entry.
#[derive(Clone)]
pub struct Payload {
    /// The answer's frame body.
    body: Wiping,
    /// Where the ids and entries lie in `body`, checked when the answer was read.
    layout: PayloadLayout,
}

impl Payload {
    /// Reads a payload answer's frame body, or the error or unexpected answer it carries.
    fn read(body: Wiping) -> Result<Self, CallError> {
        match PayloadLayout::parse(&body) {
            Some((_, layout)) => Ok(Self { body, layout }),
            None => Err(CallError::from_answer::<LockboxResponse>(&body)),
        }
    }

    /// The secret.
    pub fn secret_id(&self) -> &str {
        self.layout.secret_id(&self.body)
    }

    /// The version read.
    pub fn version_id(&self) -> &str {
        self.layout.version_id(&self.body)
    }

    /// The entries, in the order the version holds them.
    pub fn entries(&self) -> PayloadEntries<'_> {
        self.layout.entries(&self.body)
    }

    /// The value of the entry `key`, if the version has one.
    pub fn get(&self, key: &str) -> Option<PayloadValueRef<'_>> {
        self.layout.get(&self.body, key)
    }

    /// How many entries the version has.
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether the version has no entries.
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values show redacted (see `PayloadValueRef`).
        f.debug_struct("Payload")
            .field("secret_id", &self.secret_id())
            .field("version_id", &self.version_id())
            .field("entries", &self.entries())
            .finish()
    }
}

/// A connection to `lockboxd`, opened again when it ends.
///
/// lockboxd ends a connection when its identity lapses: at its maximum age, or when the
/// service-account token it authenticated with expires or its key or account is deleted.
/// It refuses every request it has received with `UNAUTHENTICATED`, so none of them ran. A
/// client that can prove its identity again (the local user always can; a service account
/// when the client holds its key) reconnects and sends such a request once more, and
/// renews a service account's token on a new connection before it expires. Cheap to
/// clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct LockboxClient {
    /// The connection, redialled when it lapses.
    redial: Arc<Redial<LockboxResponse>>,
}

/// Tells the time a client signs its tokens at, in Unix seconds.
pub type TokenClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Authenticates every new connection as a service account with a freshly signed token.
struct SignIn {
    /// The account's key.
    key: crate::sa::KeyFile,
    /// The time tokens are issued at.
    clock: TokenClock,
}

/// How long before a token's expiry a client holding the key moves to a new connection.
const RENEW_MARGIN: i64 = 60;

impl Prepare<LockboxResponse> for SignIn {
    fn prepare<'a>(
        &'a self,
        channel: &'a Channel<LockboxResponse>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<i64>, CallError>> + Send + 'a>> {
        Box::pin(async move {
            let now = (self.clock)();
            let token = self
                .key
                .sign_token(LOCKBOXD_AUDIENCE, now, crate::sa::TOKEN_LIFETIME)
                .map_err(|e| {
                    CallError::Server(lockbox_proto::Error::new(
                        ErrorCode::Unauthenticated,
                        e.to_string(),
                    ))
                })?;
            let answer = channel
                .call(
                    None,
                    &LockboxRequest::Authenticate {
                        token: lockbox_proto::token::Bearer::new(token),
                    },
                )
                .await?;
            expect!(answer, LockboxResponse::Authenticated { .. } => ())?;
            Ok(Some(now + crate::sa::TOKEN_LIFETIME - RENEW_MARGIN))
        })
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }
}

/// How the client names itself in its hello.
const CLIENT_NAME: &str = concat!("lockbox-client/", env!("CARGO_PKG_VERSION"));

impl LockboxClient {
    /// Connects to `lockboxd` at `socket` as the local user.
    pub async fn connect(socket: &Path) -> Result<Self, CallError> {
        Self::open(socket, None).await
    }

    /// Connects and authenticates as the service account of `key`, with a freshly signed
    /// short-lived token, renewed on a new connection before it expires.
    pub async fn connect_as(socket: &Path, key: &crate::sa::KeyFile) -> Result<Self, CallError> {
        Self::connect_as_with_clock(socket, key, Arc::new(crate::sa::now)).await
    }

    /// [`connect_as`](Self::connect_as), signing tokens at the time `clock` tells: for a
    /// lockboxd whose clock is not the system's (a test clock).
    pub async fn connect_as_with_clock(
        socket: &Path,
        key: &crate::sa::KeyFile,
        clock: TokenClock,
    ) -> Result<Self, CallError> {
        let sign_in = SignIn {
            key: key.clone(),
            clock,
        };
        Self::open(socket, Some(Box::new(sign_in))).await
    }

    async fn open(
        socket: &Path,
        prepare: Option<Box<dyn Prepare<LockboxResponse>>>,
    ) -> Result<Self, CallError> {
        let redial = Redial::connect(socket, Service::Lockbox, CLIENT_NAME, prepare).await?;
        Ok(Self {
            redial: Arc::new(redial),
        })
    }

    /// Acts as the service account `token` names for the rest of the connection; returns
    /// its subject. When the connection's identity lapses, the client does not reconnect:
    /// it has no way to prove it is the account again.
    pub async fn authenticate(&self, token: &str) -> Result<String, CallError> {
        self.redial.pin();
        let request = LockboxRequest::Authenticate {
            token: lockbox_proto::token::Bearer::new(token.into()),
        };
        let r = self.redial.channel().await?.call(None, &request).await?;
        expect!(r, LockboxResponse::Authenticated { subject } => subject)
    }

    /// Creates a service account (empty folder id: the default folder).
    pub async fn create_service_account(
        &self,
        folder_id: &str,
        name: &str,
        description: &str,
    ) -> Result<ServiceAccount, CallError> {
        let r = self
            .call(&LockboxRequest::CreateServiceAccount {
                folder_id: folder_id.into(),
                name: name.into(),
                description: description.into(),
            })
            .await?;
        expect!(r, LockboxResponse::ServiceAccount(a) => *a)
    }

    /// Gets a service account.
    pub async fn get_service_account(&self, id: &str) -> Result<ServiceAccount, CallError> {
        let r = self
            .call(&LockboxRequest::GetServiceAccount {
                service_account_id: id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::ServiceAccount(a) => *a)
    }

    /// Lists a folder's service accounts.
    pub async fn list_service_accounts(
        &self,
        folder_id: &str,
        page: Page,
    ) -> Result<Listed<ServiceAccount>, CallError> {
        let r = self
            .call(&LockboxRequest::ListServiceAccounts {
                folder_id: folder_id.into(),
                page,
            })
            .await?;
        expect!(r, LockboxResponse::ServiceAccounts { service_accounts, next_page_token } => (service_accounts, next_page_token))
    }

    /// Deletes a service account and its keys.
    pub async fn delete_service_account(&self, id: &str) -> Result<(), CallError> {
        let r = self
            .call(&LockboxRequest::DeleteServiceAccount {
                service_account_id: id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Done => ())
    }

    /// Creates a key; returns it with the private key as a key file (shown only once).
    pub async fn create_service_account_key(
        &self,
        id: &str,
        description: &str,
    ) -> Result<crate::sa::KeyFile, CallError> {
        let r = self
            .call(&LockboxRequest::CreateServiceAccountKey {
                service_account_id: id.into(),
                description: description.into(),
            })
            .await?;
        expect!(r, LockboxResponse::ServiceAccountKeyCreated { key, private_key_pem } => crate::sa::KeyFile {
            id: key.id,
            service_account_id: key.service_account_id,
            key_algorithm: "ECDSA_P256".into(),
            public_key: key.public_key_pem,
            private_key: String::from_utf8_lossy(private_key_pem.expose()).into_owned(),
        })
    }

    /// Lists a service account's keys.
    pub async fn list_service_account_keys(
        &self,
        id: &str,
    ) -> Result<Vec<ServiceAccountKey>, CallError> {
        let r = self
            .call(&LockboxRequest::ListServiceAccountKeys {
                service_account_id: id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::ServiceAccountKeys { keys } => keys)
    }

    /// Deletes a key.
    pub async fn delete_service_account_key(
        &self,
        id: &str,
        key_id: &str,
    ) -> Result<(), CallError> {
        let r = self
            .call(&LockboxRequest::DeleteServiceAccountKey {
                service_account_id: id.into(),
                key_id: key_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Done => ())
    }

    /// Takes a checkpoint of lockboxd's data for a backup.
    pub async fn begin_backup(&self) -> Result<BackupStarted, CallError> {
        let r = self.call(&LockboxRequest::BeginBackup).await?;
        expect!(r, LockboxResponse::BackupStarted(started) => *started)
    }

    /// Up to `length` bytes of one file of the open backup, from `offset`.
    pub async fn read_backup(
        &self,
        backup_id: &str,
        file: &str,
        offset: u64,
        length: u32,
    ) -> Result<Vec<u8>, CallError> {
        let r = self
            .call(&LockboxRequest::ReadBackup {
                backup_id: backup_id.into(),
                file: file.into(),
                offset,
                length,
            })
            .await?;
        expect!(r, LockboxResponse::BackupChunk { bytes } => bytes)
    }

    /// Releases the open backup's checkpoint.
    pub async fn end_backup(&self, backup_id: &str) -> Result<(), CallError> {
        let r = self
            .call(&LockboxRequest::EndBackup {
                backup_id: backup_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Done => ())
    }

    /// Wraps lockboxd's service keyring under its KMS key's primary version now. Returns
    /// the key, the version that wrapped the keyring before, and the one that wraps it now.
    pub async fn rewrap_keyring(&self) -> Result<(String, String, String), CallError> {
        let r = self.call(&LockboxRequest::RewrapKeyring).await?;
        expect!(r, LockboxResponse::KeyringRewrapped { kms_key_id, from_version_id, version_id } =>
            (kms_key_id, from_version_id, version_id))
    }

    /// Re-encrypts, under `kms_key_id`'s primary version, the data keys of up to `limit`
    /// secret versions an older version wraps. Returns how many it did and how many remain.
    pub async fn rewrap_data_keys(
        &self,
        kms_key_id: &str,
        limit: u32,
    ) -> Result<(u64, u64), CallError> {
        let r = self
            .call(&LockboxRequest::RewrapDataKeys {
                kms_key_id: kms_key_id.into(),
                limit,
            })
            .await?;
        expect!(r, LockboxResponse::DataKeysRewrapped { rewrapped, remaining, .. } =>
            (rewrapped, remaining))
    }

    /// The subject the daemon identified the current connection as when it connected.
    pub fn subject(&self) -> String {
        self.redial.current().server_info().subject.clone()
    }

    /// Sends any request and returns the raw response; sent once more on a new connection
    /// if the identity of the current one lapsed.
    pub async fn call(&self, request: &LockboxRequest) -> Result<LockboxResponse, CallError> {
        self.redial
            .call_with(|channel| async move { channel.call(None, request).await })
            .await
    }

    async fn operation(&self, request: LockboxRequest) -> Result<Operation, CallError> {
        expect!(self.call(&request).await?, LockboxResponse::Operation(op) => *op)
    }

    /// Creates a secret.
    pub async fn create_secret(&self, spec: CreateSecret) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::CreateSecret(spec)).await
    }

    /// Gets a secret.
    pub async fn get_secret(&self, secret_id: &str) -> Result<Secret, CallError> {
        let r = self
            .call(&LockboxRequest::GetSecret {
                secret_id: secret_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Secret(s) => *s)
    }

    /// Lists a folder's secrets (empty folder id: the default folder).
    pub async fn list_secrets(
        &self,
        folder_id: &str,
        page: Page,
    ) -> Result<Listed<Secret>, CallError> {
        let r = self
            .call(&LockboxRequest::ListSecrets {
                folder_id: folder_id.into(),
                page,
            })
            .await?;
        expect!(r, LockboxResponse::Secrets { secrets, next_page_token } => (secrets, next_page_token))
    }

    /// Updates the fields named in `update.update_mask`.
    pub async fn update_secret(&self, update: UpdateSecret) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::UpdateSecret(update)).await
    }

    /// Deletes a secret.
    pub async fn delete_secret(&self, secret_id: &str) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::DeleteSecret {
            secret_id: secret_id.into(),
        })
        .await
    }

    /// Activates a secret.
    pub async fn activate_secret(&self, secret_id: &str) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::ActivateSecret {
            secret_id: secret_id.into(),
        })
        .await
    }

    /// Deactivates a secret.
    pub async fn deactivate_secret(&self, secret_id: &str) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::DeactivateSecret {
            secret_id: secret_id.into(),
        })
        .await
    }

    /// Lists a secret's versions, newest first.
    pub async fn list_versions(
        &self,
        secret_id: &str,
        page: Page,
    ) -> Result<Listed<Version>, CallError> {
        let r = self
            .call(&LockboxRequest::ListVersions {
                secret_id: secret_id.into(),
                page,
            })
            .await?;
        expect!(r, LockboxResponse::Versions { versions, next_page_token } => (versions, next_page_token))
    }

    /// Adds a version.
    pub async fn add_version(&self, add: AddVersion) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::AddVersion(add)).await
    }

    /// Makes a version current.
    pub async fn set_current_version(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::SetCurrentVersion {
            secret_id: secret_id.into(),
            version_id: version_id.into(),
        })
        .await
    }

    /// Schedules a version's destruction (`None`: after 7 days).
    pub async fn schedule_version_destruction(
        &self,
        secret_id: &str,
        version_id: &str,
        pending_period: Option<u64>,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::ScheduleVersionDestruction {
            secret_id: secret_id.into(),
            version_id: version_id.into(),
            pending_period,
        })
        .await
    }

    /// Cancels a scheduled destruction.
    pub async fn cancel_version_destruction(
        &self,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::CancelVersionDestruction {
            secret_id: secret_id.into(),
            version_id: version_id.into(),
        })
        .await
    }

    /// Lists a secret's operations, newest first.
    pub async fn list_operations(
        &self,
        secret_id: &str,
        page: Page,
    ) -> Result<Listed<Operation>, CallError> {
        let r = self
            .call(&LockboxRequest::ListOperations {
                secret_id: secret_id.into(),
                page,
            })
            .await?;
        expect!(r, LockboxResponse::Operations { operations, next_page_token } => (operations, next_page_token))
    }

    /// Lists the operations recorded on a folder, cloud, organization or secret, newest
    /// first.
    pub async fn list_resource_operations(
        &self,
        resource: LockboxResource,
        page: Page,
    ) -> Result<Listed<Operation>, CallError> {
        let r = self
            .call(&LockboxRequest::ListResourceOperations { resource, page })
            .await?;
        expect!(r, LockboxResponse::Operations { operations, next_page_token } => (operations, next_page_token))
    }

    /// A cloud's quotas and their usage (empty id: the default cloud); returns the cloud's
    /// id with them.
    pub async fn list_quotas(&self, cloud_id: &str) -> Result<(String, Vec<Quota>), CallError> {
        let r = self
            .call(&LockboxRequest::ListQuotas {
                cloud_id: cloud_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Quotas { cloud_id, quotas } => (cloud_id, quotas))
    }

    async fn payload<R: Serialize>(&self, request: &R) -> Result<Payload, CallError> {
        // The answer is read where it lies; see `Payload`. The most frequent call: the
        // connection in use is taken without an `await`, and not cloned again.
        let channel = match self.redial.usable() {
            Ok(channel) => channel,
            Err(stale) => self.redial.channel_after(stale).await?,
        };
        let answer = Payload::read(channel.call_raw(None, request).await?);
        if !answer.as_ref().is_err_and(CallError::is_lapsed) {
            return answer;
        }
        self.redial
            .again_if_lapsed(answer, &channel, |fresh| async move {
                Payload::read(fresh.call_raw(None, request).await?)
            })
            .await
    }

    /// Reads a payload (default: the current version).
    pub async fn get_payload(
        &self,
        secret_id: &str,
        version_id: Option<&str>,
    ) -> Result<Payload, CallError> {
        // Sent from the borrowed ids: the most frequent call copies nothing to make its request.
        self.payload(&GetPayloadRef {
            secret_id,
            version_id,
        })
        .await
    }

    /// Reads a payload by folder (empty: default) and secret name.
    pub async fn get_payload_by_name(
        &self,
        folder_id: &str,
        name: &str,
        version_id: Option<&str>,
    ) -> Result<Payload, CallError> {
        self.payload(&LockboxRequest::GetPayloadEx {
            secret: SecretRef::FolderAndName {
                folder_id: folder_id.into(),
                name: name.into(),
            },
            version_id: version_id.map(Into::into),
        })
        .await
    }

    /// Creates a cloud.
    pub async fn create_cloud(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::CreateCloud {
            organization_id: String::new(),
            name: name.into(),
            description: description.into(),
        })
        .await
    }

    /// Gets a cloud.
    pub async fn get_cloud(&self, cloud_id: &str) -> Result<Cloud, CallError> {
        let r = self
            .call(&LockboxRequest::GetCloud {
                cloud_id: cloud_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Cloud(c) => *c)
    }

    /// Lists clouds.
    pub async fn list_clouds(&self, page: Page) -> Result<Listed<Cloud>, CallError> {
        let r = self.call(&LockboxRequest::ListClouds { page }).await?;
        expect!(r, LockboxResponse::Clouds { clouds, next_page_token } => (clouds, next_page_token))
    }

    /// Deletes an empty cloud.
    pub async fn delete_cloud(&self, cloud_id: &str) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::DeleteCloud {
            cloud_id: cloud_id.into(),
        })
        .await
    }

    /// Creates a folder (empty cloud id: the default cloud).
    pub async fn create_folder(
        &self,
        cloud_id: &str,
        name: &str,
        description: &str,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::CreateFolder {
            cloud_id: cloud_id.into(),
            name: name.into(),
            description: description.into(),
        })
        .await
    }

    /// Gets a folder.
    pub async fn get_folder(&self, folder_id: &str) -> Result<Folder, CallError> {
        let r = self
            .call(&LockboxRequest::GetFolder {
                folder_id: folder_id.into(),
            })
            .await?;
        expect!(r, LockboxResponse::Folder(f) => *f)
    }

    /// Lists a cloud's folders (empty: the default cloud).
    pub async fn list_folders(
        &self,
        cloud_id: &str,
        page: Page,
    ) -> Result<Listed<Folder>, CallError> {
        let r = self
            .call(&LockboxRequest::ListFolders {
                cloud_id: cloud_id.into(),
                page,
            })
            .await?;
        expect!(r, LockboxResponse::Folders { folders, next_page_token } => (folders, next_page_token))
    }

    /// Deletes an empty folder.
    pub async fn delete_folder(&self, folder_id: &str) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::DeleteFolder {
            folder_id: folder_id.into(),
        })
        .await
    }

    /// Bindings attached directly to `resource`.
    pub async fn list_access_bindings(
        &self,
        resource: LockboxResource,
        page: Page,
    ) -> Result<Listed<AccessBinding>, CallError> {
        let r = self
            .call(&LockboxRequest::ListAccessBindings { resource, page })
            .await?;
        expect!(r, LockboxResponse::AccessBindings { bindings, next_page_token } => (bindings, next_page_token))
    }

    /// Replaces the bindings on `resource`.
    pub async fn set_access_bindings(
        &self,
        resource: LockboxResource,
        bindings: Vec<AccessBinding>,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::SetAccessBindings { resource, bindings })
            .await
    }

    /// Adds and removes bindings on `resource`.
    pub async fn update_access_bindings(
        &self,
        resource: LockboxResource,
        deltas: Vec<AccessBindingDelta>,
    ) -> Result<Operation, CallError> {
        self.operation(LockboxRequest::UpdateAccessBindings { resource, deltas })
            .await
    }

    /// Test servers only: moves the daemon's clock and destroys due versions.
    pub async fn danger_advance_clock(&self, seconds: u64) -> Result<i64, CallError> {
        let r = self
            .call(&LockboxRequest::DangerAdvanceClock { seconds })
            .await?;
        expect!(r, LockboxResponse::ClockAdvanced { now } => now)
    }
}
