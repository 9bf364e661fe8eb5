//! The daemon's connection to `lockbox-kms`: connects on first use, reconnects after a
//! failure, and turns an unreachable KMS into `Unavailable` without affecting anything that
//! does not need it.

use crate::error::LockboxError;
use lockbox_client::kms::DecryptedInPlace;
use lockbox_client::{CallError, KmsClient};
use lockbox_proto::Principal;
use std::path::PathBuf;
use std::sync::Mutex;

/// A lazily (re)connected KMS client.
#[derive(Debug)]
pub struct KmsLink {
    /// The KMS socket.
    socket: PathBuf,
    /// The current connection, if one is open.
    client: Mutex<Option<KmsClient>>,
}

impl KmsLink {
    /// A link to the KMS at `socket`; nothing connects until the first call.
    pub fn new(socket: PathBuf) -> Self {
        Self {
            socket,
            client: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<KmsClient> {
        let guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|c| !c.is_closed()).cloned()
    }

    async fn connection(&self) -> Result<KmsClient, CallError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let fresh = KmsClient::connect(&self.socket).await?;
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(fresh.clone());
        tracing::info!(socket = %self.socket.display(), "connected to lockbox-kms");
        Ok(fresh)
    }

    fn forget(&self) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `call`, reconnecting and retrying once if the connection was lost (all KMS calls
    /// the daemon makes are safe to repeat).
    async fn with_client<T, F, Fut>(&self, call: F) -> Result<T, LockboxError>
    where
        F: Fn(KmsClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, CallError>>,
    {
        for attempt in 0..2 {
            let result = match self.connection().await {
                Ok(client) => call(client).await,
                Err(e) => Err(e),
            };
            match result {
                Err(CallError::Disconnected(_) | CallError::Connect { .. }) if attempt == 0 => {
                    self.forget();
                }
                Err(e) => {
                    if !matches!(e, CallError::Server(_)) {
                        self.forget();
                    }
                    return Err(e.into());
                }
                Ok(v) => return Ok(v),
            }
        }
        Err(LockboxError::Unavailable(
            "lockbox-kms is unavailable".into(),
        ))
    }

    /// Encrypts with `key_id`, authorized as `on_behalf_of` (or as the daemon itself).
    pub async fn encrypt(
        &self,
        on_behalf_of: Option<&Principal>,
        key_id: &str,
        aad_context: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, LockboxError> {
        self.with_client(|c| async move {
            let c = match on_behalf_of {
                Some(p) => c.on_behalf_of(p.clone()),
                None => c,
            };
            c.encrypt(key_id, None, aad_context, plaintext)
                .await
                .map(|r| r.ciphertext)
        })
        .await
    }

    /// Decrypts with `key_id`, authorized as `on_behalf_of` (or as the daemon itself). The
    /// plaintext is read where it lies in the KMS's answer and wiped with it.
    pub async fn decrypt(
        &self,
        on_behalf_of: Option<&Principal>,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<DecryptedInPlace, LockboxError> {
        self.with_client(|c| async move {
            c.decrypt_in_place(on_behalf_of, key_id, aad_context, ciphertext)
                .await
        })
        .await
    }

    /// Creates a symmetric key for the daemon's own use, in `folder_id`.
    pub async fn create_own_key(
        &self,
        folder_id: &str,
        name: &str,
    ) -> Result<String, LockboxError> {
        use lockbox_proto::kms::{CreateSymmetricKey, SymmetricAlgorithm};
        self.with_client(|c| async move {
            c.create_symmetric_key(CreateSymmetricKey {
                folder_id: folder_id.into(),
                name: name.into(),
                description: "wraps lockboxd's service keyring".into(),
                labels: Default::default(),
                default_algorithm: SymmetricAlgorithm::Aes256,
                rotation_period: None,
                deletion_protection: true,
            })
            .await
            .map(|k| k.id)
        })
        .await
    }
}
