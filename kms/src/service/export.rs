//! Exporting the sealed keystore for a backup: the file as it is on disk, still sealed, read
//! a piece at a time. Each piece names the whole file's length and SHA-256 when it was read,
//! so a reader whose pieces span a change (a mutation replaces the file) notices and starts
//! over. The unseal material never leaves.

use super::{Caller, Kms};
use crate::error::KmsError;
use crate::model::SCHEMA;
use sha2::{Digest, Sha256};

/// Most bytes one export returns.
pub const MAX_KEYSTORE_CHUNK: usize = 16 * 1024;

/// A piece of the sealed keystore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreChunk {
    /// The keystore schema of this lockbox-kms.
    pub schema: u32,
    /// The whole file's length when this piece was read.
    pub total_size: u64,
    /// The whole file's SHA-256, lowercase hex, when this piece was read.
    pub sha256: String,
    /// The bytes from the requested offset.
    pub bytes: Vec<u8>,
}

impl Kms {
    /// Up to `length` bytes (at most [`MAX_KEYSTORE_CHUNK`]) of the sealed keystore from
    /// `offset`. Only a `kms.admin` of the root may export.
    pub async fn export_keystore(
        &self,
        caller: &Caller<'_>,
        offset: u64,
        length: u32,
    ) -> Result<KeystoreChunk, KmsError> {
        self.require_root_admin(caller)?;
        let path = self.keystore.path().to_owned();
        // The file is replaced by rename, never written in place: a read sees one whole
        // version of it.
        let file = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| KmsError::Internal(format!("the export task failed: {e}")))?
            .map_err(|e| KmsError::Internal(format!("cannot read the keystore: {e}")))?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.len());
        let length = usize::try_from(length)
            .unwrap_or(usize::MAX)
            .min(MAX_KEYSTORE_CHUNK);
        let end = start.saturating_add(length).min(file.len());
        Ok(KeystoreChunk {
            schema: SCHEMA,
            total_size: file.len() as u64,
            sha256: lockbox_proto::bytes::hex(&Sha256::digest(&file)),
            bytes: file[start..end].to_vec(),
        })
    }
}
