//! Encrypt, Decrypt, ReEncrypt and GenerateDataKey. These run on every secret read, so they
//! work on the current snapshot without allocating beyond their output.

use super::{Caller, Kms, Snapshot, require_active, symmetric_key};
use crate::access::Permission;
use crate::crypto::{self, Algorithm, KeyMaterial};
use crate::error::KmsError;
use crate::model::{SymmetricKeyRecord, VersionStatus};
use lockbox_proto::Wiping;
use lockbox_proto::kms::{MAX_AAD_CONTEXT, MAX_PLAINTEXT};

/// An encryption's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Key used.
    pub key_id: String,
    /// Version used.
    pub version_id: String,
    /// Ciphertext (names the version).
    pub ciphertext: Vec<u8>,
}

/// A decryption's result.
#[derive(Debug)]
pub struct Decrypted {
    /// Key used.
    pub key_id: String,
    /// Version the ciphertext was made with.
    pub version_id: String,
    /// Plaintext, zeroized on drop.
    pub plaintext: Wiping,
}

/// A decryption's result as [`Kms::decrypt_then`] lends it: the key's id from the keystore,
/// the version's from the ciphertext.
#[derive(Debug)]
pub struct Decryption<'a> {
    /// Key used.
    pub key_id: &'a str,
    /// Version the ciphertext was made with.
    pub version_id: &'a str,
    /// Plaintext, zeroized on drop.
    pub plaintext: Wiping,
}

/// A generated data key.
#[derive(Debug)]
pub struct DataKey {
    /// The encryption of the data key.
    pub encrypted: Encrypted,
    /// The data key itself, unless the caller asked to skip it.
    pub plaintext: Option<Wiping>,
}

fn check_aad(aad_context: &[u8]) -> Result<(), KmsError> {
    if aad_context.len() > MAX_AAD_CONTEXT {
        return Err(KmsError::InvalidArgument(format!(
            "aad_context: at most {MAX_AAD_CONTEXT} bytes, got {}",
            aad_context.len()
        )));
    }
    Ok(())
}

fn usable_key<'s>(
    snap: &'s Snapshot,
    caller: &Caller<'_>,
    key_id: &str,
    permission: Permission,
) -> Result<&'s SymmetricKeyRecord, KmsError> {
    let key = symmetric_key(&snap.state, key_id)?;
    Kms::authorize_key(snap, caller, &key.meta, permission)?;
    require_active(&key.meta)?;
    Ok(key)
}

fn encrypt_with(
    snap: &Snapshot,
    key: &SymmetricKeyRecord,
    version_id: Option<&str>,
    aad_context: &[u8],
    plaintext: &[u8],
) -> Result<Encrypted, KmsError> {
    let key_id = key.meta.id.as_str();
    let version_id = version_id.unwrap_or(&key.primary_version_id);
    let version = key.existing_version(version_id)?;
    if version.status != VersionStatus::Active {
        return Err(KmsError::FailedPrecondition(format!(
            "version {version_id} is not active and cannot encrypt"
        )));
    }
    let cipher = snap
        .ciphers
        .get(version_id)
        .ok_or_else(|| KmsError::Internal(format!("version {version_id} has no material")))?;
    Ok(Encrypted {
        key_id: key_id.to_owned(),
        version_id: version_id.to_owned(),
        ciphertext: crypto::encrypt(cipher, key_id, version_id, aad_context, plaintext)?,
    })
}

fn decrypt_with<'a>(
    snap: &'a Snapshot,
    key: &'a SymmetricKeyRecord,
    aad_context: &[u8],
    ciphertext: &'a [u8],
    now: i64,
) -> Result<Decryption<'a>, KmsError> {
    let key_id = key.meta.id.as_str();
    let version_id = crypto::version_of(ciphertext).ok_or(KmsError::DecryptionFailed)?;
    let version = key.version(version_id).ok_or(KmsError::DecryptionFailed)?;
    if version.is_destroyed_at(now) {
        return Err(KmsError::FailedPrecondition(format!(
            "version {version_id} of key {key_id} is destroyed; data encrypted with it cannot be recovered"
        )));
    }
    let cipher = snap
        .ciphers
        .get(version_id)
        .ok_or_else(|| KmsError::Internal(format!("version {version_id} has no material")))?;
    Ok(Decryption {
        key_id,
        version_id,
        plaintext: crypto::decrypt(cipher, key_id, version_id, aad_context, ciphertext)?,
    })
}

impl Kms {
    /// Encrypts `plaintext` with the key's primary version or `version_id`.
    pub fn encrypt(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        plaintext: &[u8],
    ) -> Result<Encrypted, KmsError> {
        check_aad(aad_context)?;
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::InvalidArgument(format!(
                "plaintext: at most {MAX_PLAINTEXT} bytes, got {}",
                plaintext.len()
            )));
        }
        let snap = self.snapshot();
        let key = usable_key(&snap, caller, key_id, Permission::Encrypt)?;
        encrypt_with(&snap, key, version_id, aad_context, plaintext)
    }

    /// Decrypts a ciphertext made with `key_id`.
    pub fn decrypt(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<Decrypted, KmsError> {
        self.decrypt_then(caller, key_id, aad_context, ciphertext, |d| Decrypted {
            key_id: d.key_id.to_owned(),
            version_id: d.version_id.to_owned(),
            plaintext: d.plaintext,
        })
    }

    /// Decrypts a ciphertext made with `key_id` and hands the result to `then`, which may
    /// use its ids without copying them.
    pub fn decrypt_then<T>(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        aad_context: &[u8],
        ciphertext: &[u8],
        then: impl FnOnce(Decryption<'_>) -> T,
    ) -> Result<T, KmsError> {
        check_aad(aad_context)?;
        let snap = self.snapshot();
        let key = usable_key(&snap, caller, key_id, Permission::Decrypt)?;
        decrypt_with(&snap, key, aad_context, ciphertext, self.now()).map(then)
    }

    /// Decrypts under the source key and encrypts under `key_id`, never returning the
    /// plaintext. Needs decrypt on the source and encrypt on the destination.
    #[allow(clippy::too_many_arguments)]
    pub fn re_encrypt(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        source_key_id: &str,
        source_aad_context: &[u8],
        ciphertext: &[u8],
    ) -> Result<(Encrypted, String), KmsError> {
        check_aad(aad_context)?;
        check_aad(source_aad_context)?;
        let snap = self.snapshot();
        let source = usable_key(&snap, caller, source_key_id, Permission::Decrypt)?;
        let destination = usable_key(&snap, caller, key_id, Permission::Encrypt)?;
        let plain = decrypt_with(&snap, source, source_aad_context, ciphertext, self.now())?;
        let encrypted = encrypt_with(
            &snap,
            destination,
            version_id,
            aad_context,
            &plain.plaintext,
        )?;
        Ok((encrypted, plain.version_id.to_owned()))
    }

    /// Generates a random data key of `spec`'s size and encrypts it.
    pub fn generate_data_key(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: Option<&str>,
        aad_context: &[u8],
        spec: Algorithm,
        skip_plaintext: bool,
    ) -> Result<DataKey, KmsError> {
        check_aad(aad_context)?;
        let snap = self.snapshot();
        let key = usable_key(&snap, caller, key_id, Permission::Encrypt)?;
        let data_key = KeyMaterial::random(spec.key_len());
        let encrypted = encrypt_with(&snap, key, version_id, aad_context, data_key.expose())?;
        Ok(DataKey {
            encrypted,
            plaintext: (!skip_plaintext).then(|| Wiping::new(data_key.expose().to_vec())),
        })
    }
}
