//! lockboxd's series beyond its requests (which the server loop counts): rate-limit
//! refusals as they happen, and what is stored, read from the records when Prometheus
//! scrapes: secrets per folder and cloud, versions per secret, quota usage against limits,
//! the storage engine's own figures.
//!
//! Labels hold ids, never payloads; a secret's name is a label only when the operator asks
//! for it (`[metrics] secret_names`), and only the secrets with the most versions get series
//! of their own (`[metrics] secret_series`), the rest summed into one.

use super::quotas::{PAYLOAD_SIZE, SECRETS_COUNT, VERSIONS_COUNT};
use super::{Lockbox, RateKind};
use crate::store::records::for_each_page;
use lockbox_rpc::metrics::Metrics;
use metrics::Counter;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

/// Secrets with series of their own in `lockbox_secret_active_versions` unless configured.
pub const DEFAULT_SECRET_SERIES: usize = 100;

/// What the operator chose to show of secrets.
#[derive(Debug, Clone, Copy)]
pub struct SecretSeries {
    /// Secrets with series of their own (the ones with the most versions).
    pub limit: usize,
    /// Whether a secret's series also carries its name.
    pub names: bool,
}

/// The counters the service itself updates; no-ops while metrics are off.
#[derive(Debug)]
pub(super) struct Meters {
    /// Requests refused by a rate limit, by kind.
    rate_limited: [Counter; 2],
}

impl Default for Meters {
    fn default() -> Self {
        Self::new(&Metrics::off())
    }
}

impl Meters {
    pub(super) fn new(metrics: &Metrics) -> Self {
        let refused = |kind: RateKind| {
            metrics.counter(
                "lockbox_rate_limited_total",
                "Requests refused by a per-subject rate limit, by kind.",
                &[("kind", kind.name())],
            )
        };
        Self {
            rate_limited: [refused(RateKind::PayloadRead), refused(RateKind::Mutation)],
        }
    }

    pub(super) fn rate_limited(&self, kind: RateKind) {
        let i = match kind {
            RateKind::PayloadRead => 0,
            RateKind::Mutation => 1,
        };
        self.rate_limited[i].increment(1);
    }
}

/// What one scan of the records found.
#[derive(Debug, Default)]
struct Inventory {
    /// Secrets by (cloud, folder).
    secrets: BTreeMap<(String, String), u64>,
    /// (versions not destroyed, secret id, name, cloud), one per secret.
    versions: Vec<(u32, String, String, String)>,
    /// Every cloud, with or without secrets.
    clouds: Vec<String>,
}

impl Lockbox {
    /// Keeps the service's counters in `metrics`, and those of its KMS link and store.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.meters = Meters::new(metrics);
        self.kms.instrument(metrics);
        self.records.instrument(metrics);
        self
    }

    fn inventory(&self) -> Result<Inventory, crate::store::StoreError> {
        let mut inventory = Inventory::default();
        for_each_page(
            |t| self.records.secrets(t, 1000),
            |s| {
                *inventory
                    .secrets
                    .entry((s.cloud_id.clone(), s.folder_id.clone()))
                    .or_default() += 1;
                inventory.versions.push((
                    s.version_count,
                    s.id.clone(),
                    s.name.clone(),
                    s.cloud_id.clone(),
                ));
            },
        )?;
        for_each_page(
            |t| self.records.clouds(t, 1000),
            |c| inventory.clouds.push(c.id.clone()),
        )?;
        Ok(inventory)
    }
}

/// Registers the collectors that read `lockbox`'s records at each scrape, and reports the
/// quota usage counters found to disagree with the records at start (`drift`).
pub fn collect_state(lockbox: &Arc<Lockbox>, metrics: &Metrics, shown: SecretSeries, drift: usize) {
    let drifted = metrics.gauge(
        "lockbox_quota_usage_drift",
        "Quota usage counters that disagreed with the records at start (and were corrected).",
        &[],
    );
    let weak: Weak<Lockbox> = Arc::downgrade(lockbox);
    let registry = metrics.clone();
    metrics.on_scrape(move || drifted.set(drift as f64));
    metrics.on_scrape_costly(move || {
        let Some(lockbox) = weak.upgrade() else {
            return;
        };
        match lockbox.inventory() {
            Ok(inventory) => publish(&registry, &lockbox, &inventory, shown),
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read the records"),
        }
        let engine = lockbox.records.engine_figures();
        for (name, help, value) in engine {
            registry.gauge(name, help, &[]).set(value as f64);
        }
    });
}

fn publish(metrics: &Metrics, lockbox: &Lockbox, inventory: &Inventory, shown: SecretSeries) {
    for ((cloud, folder), count) in &inventory.secrets {
        metrics
            .gauge(
                "lockbox_secrets",
                "Secrets stored, by cloud and folder.",
                &[("cloud", cloud), ("folder", folder)],
            )
            .set(*count as f64);
    }
    let mut by_versions: Vec<_> = inventory.versions.iter().collect();
    by_versions.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let (own, rest) = by_versions.split_at(shown.limit.min(by_versions.len()));
    const ACTIVE: &str = "lockbox_secret_active_versions";
    const ACTIVE_HELP: &str = "Versions not destroyed, per secret (the secrets with the most; \
                               secret=\"other\" sums the rest).";
    for (count, id, name, _) in own {
        let labels: &[(&'static str, &str)] = if shown.names {
            &[("secret", id), ("name", name)]
        } else {
            &[("secret", id)]
        };
        metrics
            .gauge(ACTIVE, ACTIVE_HELP, labels)
            .set(f64::from(*count));
    }
    let others: u64 = rest.iter().map(|v| u64::from(v.0)).sum();
    metrics
        .gauge(ACTIVE, ACTIVE_HELP, &[("secret", "other")])
        .set(others as f64);

    // Quotas per cloud: the secrets it holds, the versions of its fullest secret, and the
    // payload size limit (its usage is per version, shown in refusals).
    let mut fullest: BTreeMap<&str, u32> = BTreeMap::new();
    for (count, _, _, cloud) in &inventory.versions {
        let max = fullest.entry(cloud).or_default();
        *max = (*max).max(*count);
    }
    for cloud in &inventory.clouds {
        let limits = &lockbox.limits;
        let secrets = lockbox.records.secret_count(cloud).unwrap_or_default();
        let quotas: [(&str, Option<f64>, f64); 3] = [
            (
                SECRETS_COUNT,
                Some(secrets as f64),
                limits.secrets_per_cloud(cloud) as f64,
            ),
            (
                VERSIONS_COUNT,
                Some(f64::from(fullest.get(cloud.as_str()).copied().unwrap_or(0))),
                f64::from(limits.versions_per_secret(cloud)),
            ),
            (PAYLOAD_SIZE, None, limits.payload_bytes(cloud) as f64),
        ];
        for (quota, usage, limit) in quotas {
            let labels = [("quota", quota), ("cloud", cloud.as_str())];
            metrics
                .gauge(
                    "lockbox_quota_limit",
                    "Each quota's limit, by cloud.",
                    &labels,
                )
                .set(limit);
            if let Some(usage) = usage {
                metrics
                    .gauge(
                        "lockbox_quota_usage",
                        "What each cloud uses of its quotas (for lockbox.versions.count, its \
                         secret with the most versions).",
                        &labels,
                    )
                    .set(usage);
            }
        }
    }
}
