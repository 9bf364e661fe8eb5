//! Asymmetric signature keys: ECDSA over NIST P-256 with SHA-256.

use super::{Caller, KeyMetaSpec, Kms, Page, quotas::check_key_quota, require_active};
use crate::access::Permission;
use crate::crypto::{KeyMaterial, fill_random};
use crate::error::KmsError;
use crate::model::{KeyMeta, SignatureKeyRecord, State};
use crate::validate;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use zeroize::Zeroizing;

fn signature_key<'s>(state: &'s State, key_id: &str) -> Result<&'s SignatureKeyRecord, KmsError> {
    validate::id("key_id", key_id)?;
    state
        .signature_keys
        .get(key_id)
        .ok_or_else(|| KmsError::NotFound(format!("asymmetric signature key {key_id} not found")))
}

/// Folder of the KMS's own key that signs its audit trail.
const AUDIT_SIGNER_FOLDER: &str = "lockbox-kms";
/// Name of that key.
const AUDIT_SIGNER_NAME: &str = "audit-trail";

/// The KMS's own audit key in `state`, if there is one.
fn own_audit_key(state: &State) -> Option<String> {
    state
        .signature_keys
        .values()
        .filter(|k| {
            k.meta.folder_id == AUDIT_SIGNER_FOLDER
                && k.meta.name == AUDIT_SIGNER_NAME
                && k.meta.status == crate::model::KeyStatus::Active
        })
        .min_by_key(|k| (k.meta.created_at, k.meta.id.clone()))
        .map(|k| k.meta.id.clone())
}

/// Adds a new signature key made to `spec` to `state`.
fn insert_new_key(state: &mut State, spec: KeyMetaSpec, now: i64) -> KeyMeta {
    let signer = random_signing_key();
    let meta = spec.into_meta(now);
    state.signature_keys.insert(
        meta.id.clone(),
        SignatureKeyRecord {
            meta: meta.clone(),
            private_key: KeyMaterial::from_bytes(Zeroizing::new(signer.to_bytes().to_vec())),
        },
    );
    meta
}

fn random_signing_key() -> SigningKey {
    loop {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        // Fails only for zero or scalars ≥ the group order, with probability about 2^-32.
        if let Ok(key) = SigningKey::from_slice(bytes.as_ref()) {
            return key;
        }
    }
}

impl Kms {
    /// Creates a P-256 signature key.
    pub async fn create_signature_key(
        &self,
        caller: &Caller<'_>,
        spec: KeyMetaSpec,
    ) -> Result<KeyMeta, KmsError> {
        spec.validate()?;
        self.mutate(|snap, state, now| {
            Self::authorize(snap, caller, None, &spec.folder_id, Permission::Create)?;
            check_key_quota(state, &self.quotas, &spec.folder_id)?;
            Ok(insert_new_key(state, spec, now))
        })
        .await
    }

    /// The KMS's own key that signs its audit trail: the oldest active signature key named
    /// [`AUDIT_SIGNER_NAME`] in [`AUDIT_SIGNER_FOLDER`], created if there is none. No one
    /// may sign with it unless granted a role on it (management roles include none).
    pub async fn audit_signer(&self) -> Result<String, KmsError> {
        if let Some(id) = own_audit_key(&self.snapshot().state) {
            return Ok(id);
        }
        self.mutate(|_, state, now| {
            if let Some(id) = own_audit_key(state) {
                return Ok(id);
            }
            let spec = KeyMetaSpec {
                folder_id: AUDIT_SIGNER_FOLDER.into(),
                name: AUDIT_SIGNER_NAME.into(),
                description: "signs lockbox-kms's audit trail".into(),
                labels: Default::default(),
                deletion_protection: true,
            };
            let meta = insert_new_key(state, spec, now);
            tracing::info!(key_id = %meta.id, "created the key that signs the audit trail");
            Ok(meta.id)
        })
        .await
    }

    /// Signs `message` with `key_id` as the KMS itself, for its own audit trail.
    pub fn sign_as_kms(&self, key_id: &str, message: &[u8]) -> Result<Vec<u8>, KmsError> {
        let snap = self.snapshot();
        require_active(&signature_key(&snap.state, key_id)?.meta)?;
        let signer = snap
            .signers
            .get(key_id)
            .ok_or_else(|| KmsError::Internal(format!("key {key_id} has no signer")))?;
        let sig: Signature = signer.sign(message);
        Ok(sig.to_der().as_bytes().to_vec())
    }

    /// Reads a signature key's metadata.
    pub fn get_signature_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
    ) -> Result<KeyMeta, KmsError> {
        let snap = self.snapshot();
        let key = signature_key(&snap.state, key_id)?;
        Self::authorize_key(&snap, caller, &key.meta, Permission::Get)?;
        Ok(key.meta.clone())
    }

    /// Lists a folder's signature keys by id.
    pub fn list_signature_keys(
        &self,
        caller: &Caller<'_>,
        folder_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<KeyMeta>, KmsError> {
        validate::folder_id(folder_id)?;
        let snap = self.snapshot();
        Self::authorize(&snap, caller, None, folder_id, Permission::Get)?;
        let keys = snap
            .state
            .signature_keys
            .values()
            .filter(|k| k.meta.folder_id == folder_id)
            .map(|k| k.meta.clone())
            .collect();
        super::page_by_offset(keys, page_size, page_token)
    }

    /// The public key as PEM SubjectPublicKeyInfo.
    pub fn get_public_key(&self, caller: &Caller<'_>, key_id: &str) -> Result<String, KmsError> {
        let snap = self.snapshot();
        let key = signature_key(&snap.state, key_id)?;
        Self::authorize_key(&snap, caller, &key.meta, Permission::GetPublicKey)?;
        let signer = snap
            .signers
            .get(key_id)
            .ok_or_else(|| KmsError::Internal(format!("key {key_id} has no signer")))?;
        signer
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KmsError::Internal(format!("public key encoding failed: {e}")))
    }

    /// Signs `message` (hashed with SHA-256 here); returns a DER signature.
    pub fn sign(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        message: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        self.with_signer(caller, key_id, |signer| {
            let sig: Signature = signer.sign(message);
            Ok(sig.to_der().as_bytes().to_vec())
        })
    }

    /// Signs a SHA-256 digest; returns a DER signature.
    pub fn sign_hash(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        hash: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        if hash.len() != 32 {
            return Err(KmsError::InvalidArgument(format!(
                "hash: a SHA-256 digest is 32 bytes, got {}",
                hash.len()
            )));
        }
        self.with_signer(caller, key_id, |signer| {
            let sig: Signature = signer
                .sign_prehash(hash)
                .map_err(|_| KmsError::InvalidArgument("hash: cannot be signed".into()))?;
            Ok(sig.to_der().as_bytes().to_vec())
        })
    }

    fn with_signer<T>(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        f: impl FnOnce(&SigningKey) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let snap = self.snapshot();
        let key = signature_key(&snap.state, key_id)?;
        Self::authorize_key(&snap, caller, &key.meta, Permission::Sign)?;
        require_active(&key.meta)?;
        let signer = snap
            .signers
            .get(key_id)
            .ok_or_else(|| KmsError::Internal(format!("key {key_id} has no signer")))?;
        f(signer)
    }
}
