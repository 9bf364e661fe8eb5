//! lockbox-kms's series beyond its requests (which the server loop counts): how long each
//! keystore save takes, and the keys and versions it holds by state, read from the current
//! snapshot when Prometheus scrapes.

use super::Kms;
use crate::model::{KeyStatus, VersionStatus};
use lockbox_rpc::metrics::Metrics;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

impl Kms {
    /// Keeps the service's series in `metrics`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.save_latency = metrics.histogram(
            "lockbox_kms_keystore_save_duration_seconds",
            "Time to seal and durably save the keystore after a change.",
            &[],
        );
        self
    }

    /// Whether a key (of either kind) with this id exists, so that metrics label only keys
    /// that exist, never an id a caller made up.
    pub fn key_exists(&self, key_id: &str) -> bool {
        let snap = self.snapshot();
        snap.state.symmetric_keys.contains_key(key_id)
            || snap.state.signature_keys.contains_key(key_id)
    }
}

/// A key status's label.
fn key_state(status: KeyStatus) -> &'static str {
    match status {
        KeyStatus::Creating => "CREATING",
        KeyStatus::Active => "ACTIVE",
        KeyStatus::Inactive => "INACTIVE",
    }
}

/// A version status's label.
fn version_state(status: VersionStatus) -> &'static str {
    match status {
        VersionStatus::Active => "ACTIVE",
        VersionStatus::ScheduledForDestruction => "SCHEDULED_FOR_DESTRUCTION",
        VersionStatus::Destroyed => "DESTROYED",
    }
}

/// Registers the collector that counts `kms`'s keys and versions at each scrape.
pub fn collect_state(kms: &Arc<Kms>, metrics: &Metrics) {
    let weak: Weak<Kms> = Arc::downgrade(kms);
    let registry = metrics.clone();
    metrics.on_scrape(move || {
        let Some(kms) = weak.upgrade() else {
            return;
        };
        let snap = kms.snapshot();
        let mut keys: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        let mut versions: BTreeMap<&str, u64> = BTreeMap::new();
        // Every state shows, at zero when no key is in it, so alerts see a series.
        for state in [KeyStatus::Active, KeyStatus::Inactive] {
            keys.insert(("symmetric", key_state(state)), 0);
            keys.insert(("signature", key_state(state)), 0);
        }
        for state in [
            VersionStatus::Active,
            VersionStatus::ScheduledForDestruction,
            VersionStatus::Destroyed,
        ] {
            versions.insert(version_state(state), 0);
        }
        for key in snap.state.symmetric_keys.values() {
            *keys
                .entry(("symmetric", key_state(key.meta.status)))
                .or_default() += 1;
            for v in &key.versions {
                *versions.entry(version_state(v.status)).or_default() += 1;
            }
        }
        for key in snap.state.signature_keys.values() {
            *keys
                .entry(("signature", key_state(key.meta.status)))
                .or_default() += 1;
        }
        for ((kind, state), count) in keys {
            registry
                .gauge(
                    "lockbox_kms_keys",
                    "Keys held, by kind and state.",
                    &[("kind", kind), ("state", state)],
                )
                .set(count as f64);
        }
        for (state, count) in versions {
            registry
                .gauge(
                    "lockbox_kms_key_versions",
                    "Symmetric key versions, by state.",
                    &[("state", state)],
                )
                .set(count as f64);
        }
    });
}
