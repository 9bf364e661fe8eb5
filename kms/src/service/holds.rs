//! Holds: which key versions a relay (the secrets daemon) still keeps data under, so that
//! lockbox-kms refuses to destroy them.
//!
//! lockbox-kms cannot see the daemon's storage, but it sees every ciphertext the daemon has
//! it make: whenever an enrolled relay encrypts (for itself or on a caller's behalf), the
//! version used gets a hold for that relay before the ciphertext is answered, written to the
//! keystore the first time only. The relay releases versions by reporting, key by key, how
//! many data keys it keeps under each version (`ReportHolds`, which the daemon sends after a
//! rewrap): a version it no longer names loses its hold, except the primary, which may gain
//! data keys while the report is on its way. A held version cannot be scheduled for
//! destruction, nor its key deleted; the refusal says how to release it.

use super::{Caller, Kms, symmetric_key};
use crate::access::Permission;
use crate::error::KmsError;
use crate::model::{State, VersionStatus};
use std::collections::BTreeMap;

impl Kms {
    /// Notes that the relay `holder` keeps data encrypted under `version_id` of `key_id`,
    /// unless that is already known. Refuses (and the ciphertext must then not be answered)
    /// if the version was scheduled for destruction since it encrypted.
    pub async fn note_hold(
        &self,
        holder: &str,
        key_id: &str,
        version_id: &str,
    ) -> Result<(), KmsError> {
        let held = |state: &State| {
            state
                .holds
                .get(version_id)
                .is_some_and(|h| h.contains_key(holder))
        };
        if held(&self.snapshot().state) {
            return Ok(());
        }
        self.mutate(|snap, state, _| {
            if held(&snap.state) {
                return Ok(());
            }
            let key = symmetric_key(&snap.state, key_id)?;
            let version = key.existing_version(version_id)?;
            if version.status != VersionStatus::Active {
                return Err(KmsError::FailedPrecondition(format!(
                    "version {version_id} of key {key_id} was scheduled for destruction \
                     while it encrypted; try again"
                )));
            }
            state
                .holds
                .entry(version_id.to_owned())
                .or_default()
                .insert(holder.to_owned(), None);
            tracing::info!(key_id, version_id, holder, "version held by a relay");
            Ok(())
        })
        .await
    }

    /// A relay's report of the data keys it keeps under each version of `key_id`: replaces
    /// its holds on the key's versions, releasing every version it does not name but the
    /// primary. Only an enrolled relay, speaking for itself, may report.
    pub async fn report_holds(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        held: &BTreeMap<String, u64>,
    ) -> Result<(), KmsError> {
        let holder = caller.principal.subject;
        if caller.relay.is_some() || !self.is_relay(holder) {
            return Err(KmsError::PermissionDenied {
                permission: "kms.holds.report",
                resource: format!("key {key_id}"),
                subject: holder.to_owned(),
            });
        }
        self.mutate(|snap, state, _| {
            let key = symmetric_key(&snap.state, key_id)?;
            for version in &key.versions {
                let count = held.get(&version.id).copied().filter(|&n| n > 0);
                let holds = state.holds.entry(version.id.clone()).or_default();
                match count {
                    Some(n) => {
                        holds.insert(holder.to_owned(), Some(n));
                    }
                    None if version.id == key.primary_version_id => {}
                    None => {
                        if holds.remove(holder).is_some() {
                            tracing::info!(key_id, version_id = %version.id, holder,
                                           "version released by a relay");
                        }
                    }
                }
                if holds.is_empty() {
                    state.holds.remove(&version.id);
                }
            }
            Ok(())
        })
        .await
    }

    /// Drops every relay's hold on `version_id` of `key_id`, for a caller who may schedule
    /// its destruction: what the relays keep under it is lost once it is destroyed.
    pub async fn release_holds(
        &self,
        caller: &Caller<'_>,
        key_id: &str,
        version_id: &str,
    ) -> Result<(), KmsError> {
        self.mutate(|snap, state, _| {
            let key = symmetric_key(&snap.state, key_id)?;
            Self::authorize_key(
                snap,
                caller,
                &key.meta,
                Permission::ScheduleVersionDestruction,
            )?;
            key.existing_version(version_id)?;
            if let Some(holds) = state.holds.remove(version_id) {
                tracing::warn!(key_id, version_id, holders = ?holds.keys().collect::<Vec<_>>(),
                               subject = caller.principal.subject,
                               "holds released by hand; the data they protect is lost if \
                                the version is destroyed");
            }
            Ok(())
        })
        .await
    }
}

/// `FailedPrecondition` if a relay holds `version_id` of `key_id`, naming it, what it last
/// reported, and how to release the version.
pub(super) fn refuse_if_held(
    state: &State,
    key_id: &str,
    version_id: &str,
) -> Result<(), KmsError> {
    let Some((holder, count)) = state.holds.get(version_id).and_then(|h| h.iter().next()) else {
        return Ok(());
    };
    let what = match count {
        Some(1) => "1 data key at its last report".to_owned(),
        Some(n) => format!("{n} data keys at its last report"),
        None => "data it encrypted since its last report".to_owned(),
    };
    Err(KmsError::FailedPrecondition(format!(
        "version {version_id} of key {key_id} still protects data kept by {holder} ({what}); \
         run `lockbox kms symmetric-key rewrap {key_id}` so lockboxd moves it to the primary \
         version and releases this one (or, to destroy that data with the version, \
         schedule-version-destruction --release-held-data)"
    )))
}
