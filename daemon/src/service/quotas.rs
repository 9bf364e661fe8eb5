//! Quotas: the named limits on what callers may store, their per-cloud overrides, what a
//! cloud uses of them, and the check at start that the stored usage counters agree with the
//! records they count.
//!
//! Usage is kept where it changes, in the batch of the change: a cloud's secret count in
//! the meta table (creating and deleting a secret), a secret's count of versions not
//! destroyed in its record (creating a secret with a version, adding one, and the
//! destruction of one when due).

use super::{Caller, Lockbox};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::{Resource, SecretRecord, VersionStatus};
use crate::store::records::{Records, for_each_page};
use crate::store::{Batch, StoreError};
use std::collections::BTreeMap;

/// Secrets per cloud.
pub(super) const SECRETS_COUNT: &str = "lockbox.secrets.count";
/// Versions not destroyed per secret.
pub(super) const VERSIONS_COUNT: &str = "lockbox.versions.count";
/// Bytes of keys and values in one version's payload.
pub(super) const PAYLOAD_SIZE: &str = "lockbox.payload.size";

/// Limits on what callers may store: the defaults, and per cloud where configured.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Secrets per cloud (`lockbox.secrets.count`).
    pub secrets_per_cloud: u64,
    /// Versions not destroyed per secret (`lockbox.versions.count`).
    pub versions_per_secret: u32,
    /// Bytes of keys and values in one version's payload (`lockbox.payload.size`).
    pub payload_bytes: usize,
    /// Service-account tokens remembered against replay until they expire; past it, new
    /// tokens are refused with `ResourceExhausted` (a token lives at most an hour).
    pub live_tokens: usize,
    /// Quotas of particular clouds, by cloud id; what one leaves out is the default.
    pub clouds: BTreeMap<String, CloudLimits>,
}

/// A cloud's own quotas (`[limits.clouds.<cloud id>]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudLimits {
    /// `lockbox.secrets.count` of the cloud.
    pub secrets_per_cloud: Option<u64>,
    /// `lockbox.versions.count` of its secrets.
    pub versions_per_secret: Option<u32>,
    /// `lockbox.payload.size` of its secrets.
    pub payload_bytes: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            secrets_per_cloud: 10_000,
            versions_per_secret: 1_000,
            payload_bytes: 64 * 1024,
            live_tokens: 100_000,
            clouds: BTreeMap::new(),
        }
    }
}

impl Limits {
    fn cloud(&self, cloud_id: &str) -> Option<&CloudLimits> {
        self.clouds.get(cloud_id)
    }

    /// `lockbox.secrets.count` of `cloud_id`.
    pub fn secrets_per_cloud(&self, cloud_id: &str) -> u64 {
        self.cloud(cloud_id)
            .and_then(|c| c.secrets_per_cloud)
            .unwrap_or(self.secrets_per_cloud)
    }

    /// `lockbox.versions.count` of the secrets of `cloud_id`.
    pub fn versions_per_secret(&self, cloud_id: &str) -> u32 {
        self.cloud(cloud_id)
            .and_then(|c| c.versions_per_secret)
            .unwrap_or(self.versions_per_secret)
    }

    /// `lockbox.payload.size` of the secrets of `cloud_id`.
    pub fn payload_bytes(&self, cloud_id: &str) -> usize {
        self.cloud(cloud_id)
            .and_then(|c| c.payload_bytes)
            .unwrap_or(self.payload_bytes)
    }

    /// The largest payload answer these limits allow, bytes: a payload of the largest
    /// `payload_bytes` encodes in at most four times as many (a one-byte key and an empty
    /// value take four), plus the ids and lengths around it. The frame limit must be at
    /// least this.
    pub fn largest_answer(&self) -> u32 {
        let largest = self
            .clouds
            .values()
            .filter_map(|c| c.payload_bytes)
            .fold(self.payload_bytes, usize::max);
        u32::try_from(largest.saturating_mul(4).saturating_add(4096)).unwrap_or(u32::MAX)
    }
}

/// The refusal of a change that would take `usage` past `limit` of quota `name` on
/// `resource`.
pub(super) fn exceeded(name: &str, resource: &str, usage: u64, limit: u64) -> LockboxError {
    LockboxError::ResourceExhausted(format!(
        "quota {name} exceeded: {resource} uses {usage} of {limit}"
    ))
}

/// A quota of a cloud and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaUsage {
    /// The quota's name (`lockbox.secrets.count`).
    pub name: &'static str,
    /// What one unit of it limits: `cloud`, `secret` or `version`.
    pub per: &'static str,
    /// The limit, in what it counts.
    pub limit: u64,
    /// The usage of the cloud, or of its most used secret for a per-secret quota; `None`
    /// for a limit checked as each version is written.
    pub usage: Option<u64>,
    /// Where `usage` is: the cloud, or its most used secret.
    pub resource: String,
}

/// A cloud's quotas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudQuotas {
    /// The cloud (the default one's id when none was named).
    pub cloud_id: String,
    /// Each of its quotas.
    pub quotas: Vec<QuotaUsage>,
}

/// Usage counters as the records say they should be.
#[derive(Debug, Default, PartialEq, Eq)]
struct Recount {
    /// Secrets by cloud.
    secrets: BTreeMap<String, u64>,
    /// Versions not destroyed, by secret.
    versions: BTreeMap<String, u32>,
}

/// Counts the secrets of every cloud and the versions not destroyed of every secret, from
/// the records themselves; returns the secrets too.
fn recount(records: &Records) -> Result<(Recount, Vec<SecretRecord>), StoreError> {
    let mut counted = Recount::default();
    let mut secrets = Vec::new();
    for_each_page(|t| records.secrets(t, 1000), |s| secrets.push(s.clone()))?;
    for secret in &secrets {
        *counted.secrets.entry(secret.cloud_id.clone()).or_default() += 1;
        let mut live = 0u32;
        for_each_page(
            |t| records.versions(&secret.id, t, 1000),
            |v| live += u32::from(v.meta.status != VersionStatus::Destroyed),
        )?;
        counted.versions.insert(secret.id.clone(), live);
    }
    Ok((counted, secrets))
}

/// Recounts every usage counter from the records and writes what differs, in one batch.
/// Returns the counters that differed, as `(counter, stored, counted)`.
pub(super) fn repair_usage(records: &Records) -> Result<Vec<(String, u64, u64)>, StoreError> {
    let (counted, secrets) = recount(records)?;
    let mut drift = Vec::new();
    let mut batch = Batch::default();
    let mut clouds: Vec<String> = Vec::new();
    for_each_page(|t| records.clouds(t, 1000), |c| clouds.push(c.id.clone()))?;
    // A cloud gone with secrets counted, or secrets of a cloud not listed: count both.
    clouds.extend(counted.secrets.keys().cloned());
    clouds.sort();
    clouds.dedup();
    for cloud_id in clouds {
        let stored = records.secret_count(&cloud_id)?;
        let actual = counted.secrets.get(&cloud_id).copied().unwrap_or(0);
        if stored != actual {
            drift.push((
                format!("{SECRETS_COUNT} of cloud {cloud_id}"),
                stored,
                actual,
            ));
            records.put_secret_count(&mut batch, &cloud_id, actual);
        }
    }
    for mut secret in secrets {
        let actual = counted.versions.get(&secret.id).copied().unwrap_or(0);
        if secret.version_count != actual {
            drift.push((
                format!("{VERSIONS_COUNT} of secret {}", secret.id),
                secret.version_count.into(),
                actual.into(),
            ));
            secret.version_count = actual;
            let name = secret.name.clone();
            records.put_secret(&mut batch, &secret, Some(&name));
        }
    }
    if !drift.is_empty() {
        records.commit(batch)?;
    }
    Ok(drift)
}

impl Lockbox {
    /// Checks at start that the usage counters agree with the records, correcting and
    /// reporting (an error line each) any that do not. Returns how many did not.
    pub fn check_usage(&self) -> Result<usize, LockboxError> {
        let drift = repair_usage(&self.records)?;
        for (counter, stored, counted) in &drift {
            tracing::error!(
                counter = %counter,
                stored,
                counted,
                "a quota usage counter disagreed with the records; corrected"
            );
        }
        Ok(drift.len())
    }

    /// The quotas of `cloud_id` (empty: the default cloud) and their usage, for anyone who
    /// may see its secrets' metadata (`lockbox.auditor` and up on the cloud).
    pub fn list_quotas(
        &self,
        caller: &Caller,
        cloud_id: &str,
    ) -> Result<CloudQuotas, LockboxError> {
        let cloud_id = if cloud_id.is_empty() {
            self.defaults.cloud_id.clone()
        } else {
            cloud_id.to_owned()
        };
        let chain = self.chain(&Resource::Cloud(cloud_id.clone()))?;
        self.authorize(caller, &chain, Permission::GetQuotas)?;
        let secrets = self.records.secret_count(&cloud_id)?;
        let mut folders = Vec::new();
        for_each_page(
            |t| self.records.folders(&cloud_id, t, 1000),
            |f| folders.push(f.id.clone()),
        )?;
        let mut busiest: Option<(u32, String)> = None;
        for folder_id in &folders {
            for_each_page(
                |t| self.records.secrets_in_folder(folder_id, t, 1000),
                |s| {
                    if busiest.as_ref().is_none_or(|(n, _)| s.version_count > *n) {
                        busiest = Some((s.version_count, s.id.clone()));
                    }
                },
            )?;
        }
        let cloud = format!("cloud {cloud_id}");
        let (versions, busiest) = busiest.map_or((0, cloud.clone()), |(n, id)| {
            (u64::from(n), format!("secret {id}"))
        });
        let quotas = vec![
            QuotaUsage {
                name: SECRETS_COUNT,
                per: "cloud",
                limit: self.limits.secrets_per_cloud(&cloud_id),
                usage: Some(secrets),
                resource: cloud.clone(),
            },
            QuotaUsage {
                name: VERSIONS_COUNT,
                per: "secret",
                limit: self.limits.versions_per_secret(&cloud_id).into(),
                usage: Some(versions),
                resource: busiest,
            },
            QuotaUsage {
                name: PAYLOAD_SIZE,
                per: "version",
                limit: self.limits.payload_bytes(&cloud_id) as u64,
                usage: None,
                resource: cloud,
            },
        ];
        Ok(CloudQuotas { cloud_id, quotas })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloud_s_own_quotas_override_the_defaults_it_names() {
        let limits: Limits = toml::from_str(
            "secrets_per_cloud = 5\n[clouds.b1gbig]\nsecrets_per_cloud = 50\n\
             payload_bytes = 1048576\n",
        )
        .unwrap();
        assert_eq!(limits.secrets_per_cloud("b1gbig"), 50);
        assert_eq!(limits.secrets_per_cloud("b1gother"), 5);
        assert_eq!(limits.versions_per_secret("b1gbig"), 1_000);
        assert_eq!(limits.payload_bytes("b1gbig"), 1 << 20);
        assert_eq!(limits.largest_answer(), (4 << 20) + 4096);
        assert!(toml::from_str::<Limits>("[clouds.x]\nsecrets = 1\n").is_err());
    }
}
