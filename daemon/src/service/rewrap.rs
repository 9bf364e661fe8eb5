//! Rewrapping the data keys of secrets on their own KMS key after the key rotates, so its
//! old versions can be destroyed without losing a secret.
//!
//! lockbox-kms re-encrypts each data key (`ReEncrypt`, on behalf of the caller), so no data
//! key leaves it in plaintext. A call does at most `limit` data keys, one KMS call at a
//! time, and writes them in small batches, each checked against the record as it is then
//! (a version destroyed or rewrapped meanwhile is left alone). What a call wrote is kept
//! when it fails or the process dies; calling again resumes, since data keys already under
//! the primary version are skipped.
//!
//! lockbox-kms refuses to destroy a version lockboxd has encrypted under until lockboxd
//! reports it keeps nothing there: each call ends by reporting, for its key, the data keys
//! under every version, and a start reports for every key lockboxd uses.

use super::{Caller, Lockbox};
use crate::crypto::envelope;
use crate::error::LockboxError;
use crate::model::{WrappedDek, validate};
use crate::store::Batch;
use crate::store::records::for_each_page;
use std::collections::BTreeMap;

/// Most data keys one `RewrapDataKeys` call re-encrypts.
pub const MAX_REWRAP_LIMIT: u32 = 10_000;
/// Rewrapped data keys written per batch.
const WRITE_CHUNK: usize = 32;
/// Records read per page while looking for data keys.
const SCAN_PAGE: usize = 256;

/// What a `RewrapDataKeys` call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataKeysRewrapped {
    /// Data keys re-encrypted under the primary version by this call.
    pub rewrapped: u64,
    /// Data keys left under older versions (beyond the call's limit).
    pub remaining: u64,
}

/// Data keys by KMS key and version.
type HeldVersions = BTreeMap<String, BTreeMap<String, u64>>;

/// A version's data key as a KMS key wraps it.
struct KmsWrapped {
    secret_id: String,
    version_id: String,
    kms_key_id: String,
    /// The KMS key version that wrapped it.
    kms_version_id: String,
    ciphertext: Vec<u8>,
}

impl Lockbox {
    /// Re-encrypts the data keys of up to `limit` versions wrapped by an older version of
    /// `kms_key_id` under its primary version. Needs `lockbox.service.manage` on the
    /// organization; lockbox-kms decides whether the caller may decrypt and encrypt with
    /// the key.
    pub async fn rewrap_data_keys(
        &self,
        caller: &Caller,
        kms_key_id: &str,
        limit: u32,
    ) -> Result<DataKeysRewrapped, LockboxError> {
        self.authorize_service(caller)?;
        validate::kms_key_id(kms_key_id)?;
        if !(1..=MAX_REWRAP_LIMIT).contains(&limit) {
            return Err(LockboxError::InvalidArgument(format!(
                "limit: must be between 1 and {MAX_REWRAP_LIMIT}, got {limit}"
            )));
        }
        // lockboxd's own key wraps the keyring too: it moves first.
        if self
            .records
            .keyring()?
            .is_some_and(|k| k.kms_key_id == kms_key_id)
        {
            self.rewrap_unlocked_keyring().await?;
        }
        let mut primary: Option<String> = None;
        let mut pending = Vec::new();
        let mut outcome = DataKeysRewrapped {
            rewrapped: 0,
            remaining: 0,
        };
        let mut asked = 0;
        for key in self.kms_wrapped_data_keys(Some(kms_key_id))? {
            if primary.as_deref() == Some(key.kms_version_id.as_str()) {
                continue;
            }
            if asked == limit {
                outcome.remaining += 1;
                continue;
            }
            let context = envelope::kms_aad_context(&key.secret_id, &key.version_id);
            let again = match self
                .kms
                .re_encrypt(&caller.principal, kms_key_id, &context, &key.ciphertext)
                .await
            {
                Ok(again) => again,
                Err(e) => {
                    // Keep what was done before the failure.
                    let kept = outcome.rewrapped + self.store_rewrapped(&mut pending).await?;
                    tracing::warn!(kms_key_id, rewrapped = kept, error = %e,
                                   "rewrapping data keys stopped; what was rewrapped is kept");
                    return Err(e);
                }
            };
            // Until the first answer names the primary, a data key already under it may be
            // sent; that costs a call but not a place in the limit.
            if again.from_version_id != again.version_id {
                asked += 1;
                pending.push((key, again.ciphertext));
            }
            primary = Some(again.version_id);
            if pending.len() == WRITE_CHUNK {
                outcome.rewrapped += self.store_rewrapped(&mut pending).await?;
            }
        }
        outcome.rewrapped += self.store_rewrapped(&mut pending).await?;
        // Tell lockbox-kms which versions still wrap something, releasing the others.
        self.report_holds(kms_key_id).await?;
        tracing::info!(
            kms_key_id,
            rewrapped = outcome.rewrapped,
            remaining = outcome.remaining,
            by = caller.subject(),
            "rewrapped data keys under the KMS key's primary version"
        );
        Ok(outcome)
    }

    /// Every data key a KMS key wraps (`kms_key_id`'s, or any key's when `None`), with the
    /// key and the version that wrapped it.
    fn kms_wrapped_data_keys(
        &self,
        kms_key_id: Option<&str>,
    ) -> Result<Vec<KmsWrapped>, LockboxError> {
        let mut secrets = Vec::new();
        for_each_page(
            |token| self.records.secrets(token, SCAN_PAGE),
            |secret| match &secret.kms_key_id {
                Some(key) if kms_key_id.is_none_or(|k| k == key) => {
                    secrets.push((secret.id.clone(), key.clone()));
                }
                _ => {}
            },
        )?;
        let mut found = Vec::new();
        for (secret_id, key_id) in secrets {
            for_each_page(
                |token| self.records.versions(&secret_id, token, SCAN_PAGE),
                |version| {
                    let Some(WrappedDek::Kms(ciphertext)) = version.sealed.as_ref().map(|s| &s.dek)
                    else {
                        return;
                    };
                    let Some(kms_version_id) = crate::crypto::kms_link::kms_version_of(ciphertext)
                    else {
                        tracing::warn!(secret_id, version_id = %version.meta.id,
                                       "a data key is not shaped like a KMS ciphertext");
                        return;
                    };
                    found.push(KmsWrapped {
                        secret_id: secret_id.clone(),
                        version_id: version.meta.id.clone(),
                        kms_key_id: key_id.clone(),
                        kms_version_id: kms_version_id.to_owned(),
                        ciphertext: ciphertext.clone(),
                    });
                },
            )?;
        }
        Ok(found)
    }

    /// How many data keys each version of each KMS key wraps (of `kms_key_id` alone, or of
    /// every key when `None`), the service keyring counted under its own key.
    fn held_versions(&self, kms_key_id: Option<&str>) -> Result<HeldVersions, LockboxError> {
        let mut held = HeldVersions::new();
        for key in self.kms_wrapped_data_keys(kms_key_id)? {
            *held
                .entry(key.kms_key_id)
                .or_default()
                .entry(key.kms_version_id)
                .or_default() += 1;
        }
        if let Some(stored) = self.records.keyring()?
            && kms_key_id.is_none_or(|k| k == stored.kms_key_id)
            && let Some(version) = crate::crypto::kms_link::kms_version_of(&stored.wrapped)
        {
            *held
                .entry(stored.kms_key_id.clone())
                .or_default()
                .entry(version.to_owned())
                .or_default() += 1;
        }
        Ok(held)
    }

    /// Reports to lockbox-kms what lockboxd keeps under `kms_key_id`'s versions, so the
    /// versions it keeps nothing under can be destroyed (`lockbox-kms`'s holds).
    pub(super) async fn report_holds(&self, kms_key_id: &str) -> Result<(), LockboxError> {
        let held = self
            .held_versions(Some(kms_key_id))?
            .remove(kms_key_id)
            .unwrap_or_default();
        self.kms.report_holds(kms_key_id, &held).await
    }

    /// Reports what lockboxd keeps under every KMS key it uses: at start, so lockbox-kms's
    /// holds match the data even if it lost track (an older lockbox-kms kept none).
    pub async fn reconcile_holds(&self) -> Result<(), LockboxError> {
        for (key_id, held) in self.held_versions(None)? {
            self.kms.report_holds(&key_id, &held).await?;
        }
        Ok(())
    }

    /// [`reconcile_holds`](Self::reconcile_holds), a failure logged: the versions then
    /// stay held as lockbox-kms knew them, which never loses data.
    pub async fn reconcile_holds_logged(&self) {
        match self.reconcile_holds().await {
            Ok(()) => tracing::info!("reported the KMS key versions lockboxd keeps data under"),
            Err(e) => tracing::warn!(error = %e, "could not report to lockbox-kms which key \
                                                  versions lockboxd keeps data under"),
        }
    }

    /// Writes rewrapped data keys in one batch, each only if its version still holds the
    /// wrapping it was rewrapped from. Returns how many were written; empties `pending`.
    async fn store_rewrapped(
        &self,
        pending: &mut Vec<(KmsWrapped, Vec<u8>)>,
    ) -> Result<u64, LockboxError> {
        if pending.is_empty() {
            return Ok(0);
        }
        let writer = self.write_lock().await;
        let mut batch = Batch::default();
        let mut written = 0;
        for (key, ciphertext) in pending.drain(..) {
            let Some(mut record) = self.records.version(&key.secret_id, &key.version_id)? else {
                continue;
            };
            let Some(sealed) = record.sealed.as_mut() else {
                continue;
            };
            if !matches!(&sealed.dek, WrappedDek::Kms(old) if *old == key.ciphertext) {
                continue;
            }
            sealed.dek = WrappedDek::Kms(ciphertext);
            self.records.put_version(&mut batch, &record);
            written += 1;
        }
        self.commit(writer, batch).await?;
        Ok(written)
    }
}
