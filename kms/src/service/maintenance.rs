//! Scheduled work: automatic rotation and destruction of versions whose time has come.

use super::Kms;
use super::symmetric::rotate_in_place;
use crate::error::KmsError;
use crate::model::VersionStatus;

impl Kms {
    /// The earliest time anything is due (rotation or destruction), if anything is scheduled.
    pub fn next_due(&self) -> Option<i64> {
        let snap = self.snapshot();
        snap.state
            .symmetric_keys
            .values()
            .flat_map(|k| {
                let destructions = k
                    .versions
                    .iter()
                    .filter(|v| v.status == VersionStatus::ScheduledForDestruction)
                    .filter_map(|v| v.destroy_at);
                k.rotation_due_at().into_iter().chain(destructions)
            })
            .min()
    }

    /// Rotates keys whose rotation period has passed and erases versions whose destruction
    /// time has come. Does nothing (and writes nothing) when nothing is due.
    pub async fn run_maintenance(&self) -> Result<(), KmsError> {
        let now = self.now();
        if self.next_due().is_none_or(|due| due > now) {
            return Ok(());
        }
        let quotas = &self.quotas;
        // What was done, for the audit trail once it is saved: (request, key, version).
        let done = self
            .mutate(|_, state, now| {
                let mut done = Vec::new();
                for key in state.symmetric_keys.values_mut() {
                    for v in &mut key.versions {
                        if v.status == VersionStatus::ScheduledForDestruction
                            && v.is_destroyed_at(now)
                        {
                            v.status = VersionStatus::Destroyed;
                            // Dropping the material zeroizes it.
                            v.material = None;
                            tracing::info!(key_id = %key.meta.id, version_id = %v.id, "key version destroyed");
                            done.push(("DestroyKeyVersion", key.meta.id.clone(), v.id.clone()));
                        }
                    }
                    if key.rotation_due_at().is_some_and(|due| due <= now) {
                        match rotate_in_place(key, now, quotas) {
                            Ok(v) => {
                                tracing::info!(key_id = %key.meta.id, version_id = %v.id, "key rotated automatically");
                                let version = v.id.clone();
                                done.push(("RotateSymmetricKey", key.meta.id.clone(), version));
                            }
                            Err(e) => {
                                tracing::warn!(key_id = %key.meta.id, error = %e, "automatic rotation skipped");
                                // Try again after another period rather than on every pass.
                                key.rotated_at = Some(now);
                            }
                        }
                    }
                }
                Ok(done)
            })
            .await?;
        for (request, key_id, version_id) in done {
            crate::audit::record_request(crate::audit::Request {
                subject: crate::audit::SELF_SUBJECT,
                request,
                resource: &format!("key {key_id} version {version_id}"),
                status: "OK",
            });
        }
        Ok(())
    }
}
