//! Typed calls to `lockbox-kms`.

use lockbox_proto::common::{AccessBinding, AccessBindingDelta, Page, Quota};
use lockbox_proto::hello::Service;
use lockbox_proto::kms::{
    AsymmetricSignatureKey, CreateAsymmetricSignatureKey, CreateSymmetricKey, DecryptRef,
    KmsRequest, KmsResponse, ResourceRef, SymmetricAlgorithm, SymmetricKey, SymmetricKeyVersion,
    UpdateSymmetricKey,
};
use lockbox_proto::{Principal, SecretBytes};
use lockbox_rpc::CallError;
use lockbox_rpc::redial::Redial;
use std::path::Path;
use std::sync::Arc;

/// A connection to `lockbox-kms`, opened again when the KMS ends it (at its maximum age;
/// a request it refused for that is sent once more on the new connection).
#[derive(Debug, Clone)]
pub struct KmsClient {
    /// The pipelined connection, redialled when it lapses.
    redial: Arc<Redial<KmsResponse>>,
    /// Subject to act for, when this client is a trusted relay.
    on_behalf_of: Option<Principal>,
}

/// Result of `encrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    /// Key used.
    pub key_id: String,
    /// Version used.
    pub version_id: String,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
}

/// Result of `decrypt`.
#[derive(Debug, Clone)]
pub struct Plaintext {
    /// Key used.
    pub key_id: String,
    /// Version the ciphertext was made with.
    pub version_id: String,
    /// The plaintext (zeroized on drop).
    pub plaintext: SecretBytes,
}

/// Result of `generate_data_key`.
#[derive(Debug, Clone)]
pub struct DataKey {
    /// Key used.
    pub key_id: String,
    /// Version used.
    pub version_id: String,
    /// The data key, unless skipped.
    pub plaintext: Option<SecretBytes>,
    /// The data key encrypted under the KMS key.
    pub ciphertext: Vec<u8>,
}

/// Result of `re_encrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReEncrypted {
    /// The new ciphertext.
    pub ciphertext: Ciphertext,
    /// Source key.
    pub source_key_id: String,
    /// Source version.
    pub source_version_id: String,
}

/// A page of items and the token for the next (empty on the last page).
pub type Listed<T> = (Vec<T>, String);

impl KmsClient {
    /// Connects to `lockbox-kms` at `socket`.
    pub async fn connect(socket: &Path) -> Result<Self, CallError> {
        let redial = Redial::connect(
            socket,
            Service::Kms,
            concat!("lockbox-client/", env!("CARGO_PKG_VERSION")),
            None,
        )
        .await?;
        Ok(Self {
            redial: Arc::new(redial),
            on_behalf_of: None,
        })
    }

    /// A client acting for `principal`. Only works on a connection from an enrolled relay.
    pub fn on_behalf_of(&self, principal: Principal) -> Self {
        Self {
            redial: self.redial.clone(),
            on_behalf_of: Some(principal),
        }
    }

    /// The subject the server identified the current connection as.
    pub fn subject(&self) -> String {
        self.redial.current().server_info().subject.clone()
    }

    /// Sends any request and returns the raw response.
    pub async fn call(&self, request: &KmsRequest) -> Result<KmsResponse, CallError> {
        let on_behalf_of = self.on_behalf_of.as_ref();
        self.redial
            .call_with(|channel| async move { channel.call(on_behalf_of, request).await })
            .await
    }

    async fn key(&self, request: KmsRequest) -> Result<SymmetricKey, CallError> {
        expect!(self.call(&request).await?, KmsResponse::SymmetricKey(k) => *k)
    }

    async fn version(&self, request: KmsRequest) -> Result<SymmetricKeyVersion, CallError> {
        expect!(self.call(&request).await?, KmsResponse::SymmetricKeyVersion(v) => *v)
    }

    async fn done(&self, request: KmsRequest) -> Result<(), CallError> {
        expect!(self.call(&request).await?, KmsResponse::Done => ())
    }

    /// Creates a symmetric key.
    pub async fn create_symmetric_key(
        &self,
        spec: CreateSymmetricKey,
    ) -> Result<SymmetricKey, CallError> {
        self.key(KmsRequest::CreateSymmetricKey(spec)).await
    }

    /// Gets a symmetric key.
    pub async fn get_symmetric_key(&self, key_id: &str) -> Result<SymmetricKey, CallError> {
        self.key(KmsRequest::GetSymmetricKey {
            key_id: key_id.into(),
        })
        .await
    }

    /// Lists a folder's symmetric keys.
    pub async fn list_symmetric_keys(
        &self,
        folder_id: &str,
        page: Page,
    ) -> Result<Listed<SymmetricKey>, CallError> {
        let r = self
            .call(&KmsRequest::ListSymmetricKeys {
                folder_id: folder_id.into(),
                page,
            })
            .await?;
        expect!(r, KmsResponse::SymmetricKeys { keys, next_page_token } => (keys, next_page_token))
    }

    /// Updates the fields named in `update.update_mask`.
    pub async fn update_symmetric_key(
        &self,
        update: UpdateSymmetricKey,
    ) -> Result<SymmetricKey, CallError> {
        self.key(KmsRequest::UpdateSymmetricKey(update)).await
    }

    /// Deletes a symmetric key.
    pub async fn delete_symmetric_key(&self, key_id: &str) -> Result<(), CallError> {
        self.done(KmsRequest::DeleteSymmetricKey {
            key_id: key_id.into(),
        })
        .await
    }

    /// Lists a key's versions, newest first.
    pub async fn list_versions(
        &self,
        key_id: &str,
        page: Page,
    ) -> Result<Listed<SymmetricKeyVersion>, CallError> {
        let r = self
            .call(&KmsRequest::ListSymmetricKeyVersions {
                key_id: key_id.into(),
                page,
            })
            .await?;
        expect!(r, KmsResponse::SymmetricKeyVersions { versions, next_page_token } => (versions, next_page_token))
    }

    /// Rotates a key: a new primary version.
    pub async fn rotate(&self, key_id: &str) -> Result<SymmetricKey, CallError> {
        self.key(KmsRequest::RotateSymmetricKey {
            key_id: key_id.into(),
        })
        .await
    }

    /// Makes a version primary.
    pub async fn set_primary_version(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> Result<SymmetricKey, CallError> {
        self.key(KmsRequest::SetPrimaryVersion {
            key_id: key_id.into(),
            version_id: version_id.into(),
        })
        .await
    }

    /// Schedules a version's destruction (`None`: after 7 days).
    pub async fn schedule_version_destruction(
        &self,
        key_id: &str,
        version_id: &str,
        pending_period: Option<u64>,
    ) -> Result<SymmetricKeyVersion, CallError> {
        self.version(KmsRequest::ScheduleVersionDestruction {
            key_id: key_id.into(),
            version_id: version_id.into(),
            pending_period,
        })
        .await
    }

    /// Drops the holds of relays (lockboxd) on a version, so it can be destroyed although
    /// they keep data under it; that data is lost with the version.
    pub async fn release_holds(&self, key_id: &str, version_id: &str) -> Result<(), CallError> {
        let r = self
            .call(&KmsRequest::ReleaseHolds {
                key_id: key_id.into(),
                version_id: version_id.into(),
            })
            .await?;
        expect!(r, KmsResponse::Done => ())
    }

    /// A folder's quotas and their usage.
    pub async fn list_quotas(&self, folder_id: &str) -> Result<Vec<Quota>, CallError> {
        let r = self
            .call(&KmsRequest::ListQuotas {
                folder_id: folder_id.into(),
            })
            .await?;
        expect!(r, KmsResponse::Quotas { quotas, .. } => quotas)
    }

    /// Up to `length` bytes of the sealed keystore from `offset`: `(schema, total size,
    /// SHA-256 hex of the whole file, bytes)`.
    pub async fn export_keystore(
        &self,
        offset: u64,
        length: u32,
    ) -> Result<(u32, u64, String, Vec<u8>), CallError> {
        let r = self
            .call(&KmsRequest::ExportKeystore { offset, length })
            .await?;
        expect!(r, KmsResponse::KeystoreChunk { schema, total_size, sha256, bytes } =>
            (schema, total_size, sha256, bytes))
    }

    /// Cancels a scheduled destruction.
    pub async fn cancel_version_destruction(
        &self,
        key_id: &str,
        version_id: &str,
    ) -> Result<SymmetricKeyVersion, CallError> {
        self.version(KmsRequest::CancelVersionDestruction {
            key_id: key_id.into(),
            version_id: version_id.into(),
        })
        .await
    }

    /// Encrypts with the primary version (or `version_id`).
    pub async fn encrypt(
        &self,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        plaintext: &[u8],
    ) -> Result<Ciphertext, CallError> {
        let r = self
            .call(&KmsRequest::Encrypt {
                key_id: key_id.into(),
                version_id: version_id.map(Into::into),
                aad_context: aad_context.to_vec(),
                plaintext: SecretBytes::new(plaintext.to_vec()),
            })
            .await?;
        expect!(r, KmsResponse::Encrypted { key_id, version_id, ciphertext } => Ciphertext { key_id, version_id, ciphertext })
    }

    /// Decrypts a ciphertext made with `key_id`.
    pub async fn decrypt(
        &self,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<Plaintext, CallError> {
        let request = DecryptRef {
            key_id,
            aad_context,
            ciphertext,
        };
        let on_behalf_of = self.on_behalf_of.as_ref();
        let request = &request;
        let r = self
            .redial
            .call_with(|channel| async move { channel.call(on_behalf_of, request).await })
            .await?;
        expect!(r, KmsResponse::Decrypted { key_id, version_id, plaintext } => Plaintext { key_id, version_id, plaintext })
    }

    /// Moves a ciphertext from `source_key_id` to `key_id` without exposing the plaintext.
    pub async fn re_encrypt(
        &self,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        source_key_id: &str,
        source_aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<ReEncrypted, CallError> {
        let r = self
            .call(&KmsRequest::ReEncrypt {
                key_id: key_id.into(),
                version_id: version_id.map(Into::into),
                aad_context: aad_context.to_vec(),
                source_key_id: source_key_id.into(),
                source_aad_context: source_aad_context.to_vec(),
                ciphertext: ciphertext.to_vec(),
            })
            .await?;
        expect!(r, KmsResponse::ReEncrypted { key_id, version_id, source_key_id, source_version_id, ciphertext } =>
            ReEncrypted { ciphertext: Ciphertext { key_id, version_id, ciphertext }, source_key_id, source_version_id })
    }

    /// Generates a data key of `spec`'s size.
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        spec: SymmetricAlgorithm,
        skip_plaintext: bool,
    ) -> Result<DataKey, CallError> {
        let r = self
            .call(&KmsRequest::GenerateDataKey {
                key_id: key_id.into(),
                version_id: version_id.map(Into::into),
                aad_context: aad_context.to_vec(),
                data_key_spec: spec,
                skip_plaintext,
            })
            .await?;
        expect!(r, KmsResponse::DataKey { key_id, version_id, data_key_plaintext, data_key_ciphertext } =>
            DataKey { key_id, version_id, plaintext: data_key_plaintext, ciphertext: data_key_ciphertext })
    }

    /// Creates an ECDSA P-256 signature key.
    pub async fn create_signature_key(
        &self,
        spec: CreateAsymmetricSignatureKey,
    ) -> Result<AsymmetricSignatureKey, CallError> {
        let r = self
            .call(&KmsRequest::CreateAsymmetricSignatureKey(spec))
            .await?;
        expect!(r, KmsResponse::AsymmetricSignatureKey(k) => *k)
    }

    /// Gets a signature key.
    pub async fn get_signature_key(
        &self,
        key_id: &str,
    ) -> Result<AsymmetricSignatureKey, CallError> {
        let r = self
            .call(&KmsRequest::GetAsymmetricSignatureKey {
                key_id: key_id.into(),
            })
            .await?;
        expect!(r, KmsResponse::AsymmetricSignatureKey(k) => *k)
    }

    /// Lists a folder's signature keys.
    pub async fn list_signature_keys(
        &self,
        folder_id: &str,
        page: Page,
    ) -> Result<Listed<AsymmetricSignatureKey>, CallError> {
        let r = self
            .call(&KmsRequest::ListAsymmetricSignatureKeys {
                folder_id: folder_id.into(),
                page,
            })
            .await?;
        expect!(r, KmsResponse::AsymmetricSignatureKeys { keys, next_page_token } => (keys, next_page_token))
    }

    /// The PEM public key of a signature key.
    pub async fn get_public_key(&self, key_id: &str) -> Result<String, CallError> {
        let r = self
            .call(&KmsRequest::GetPublicKey {
                key_id: key_id.into(),
            })
            .await?;
        expect!(r, KmsResponse::PublicKey { public_key_pem, .. } => public_key_pem)
    }

    /// Signs a message; returns a DER signature.
    pub async fn sign(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, CallError> {
        let r = self
            .call(&KmsRequest::Sign {
                key_id: key_id.into(),
                message: message.to_vec(),
            })
            .await?;
        expect!(r, KmsResponse::Signature { signature, .. } => signature)
    }

    /// Signs a SHA-256 digest; returns a DER signature.
    pub async fn sign_hash(&self, key_id: &str, hash: &[u8]) -> Result<Vec<u8>, CallError> {
        let r = self
            .call(&KmsRequest::SignHash {
                key_id: key_id.into(),
                hash: hash.to_vec(),
            })
            .await?;
        expect!(r, KmsResponse::Signature { signature, .. } => signature)
    }

    /// Bindings attached directly to `resource`.
    pub async fn list_access_bindings(
        &self,
        resource: ResourceRef,
        page: Page,
    ) -> Result<Listed<AccessBinding>, CallError> {
        let r = self
            .call(&KmsRequest::ListAccessBindings { resource, page })
            .await?;
        expect!(r, KmsResponse::AccessBindings { bindings, next_page_token } => (bindings, next_page_token))
    }

    /// Replaces the bindings on `resource`.
    pub async fn set_access_bindings(
        &self,
        resource: ResourceRef,
        bindings: Vec<AccessBinding>,
    ) -> Result<(), CallError> {
        self.done(KmsRequest::SetAccessBindings { resource, bindings })
            .await
    }

    /// Adds and removes bindings on `resource`.
    pub async fn update_access_bindings(
        &self,
        resource: ResourceRef,
        deltas: Vec<AccessBindingDelta>,
    ) -> Result<(), CallError> {
        self.done(KmsRequest::UpdateAccessBindings { resource, deltas })
            .await
    }

    /// Test servers only: moves the KMS clock forward and runs due maintenance.
    pub async fn danger_advance_clock(&self, seconds: u64) -> Result<i64, CallError> {
        let r = self
            .call(&KmsRequest::DangerAdvanceClock { seconds })
            .await?;
        expect!(r, KmsResponse::ClockAdvanced { now } => now)
    }
}
