//! Per-subject rate limits: a token bucket per subject for payload reads and another for
//! changes, shared by all of the subject's connections.
//!
//! A subject's rate is its own (`[rate_limits.subjects."<subject>"]`) when configured, else
//! the most generous of the roles it holds anywhere (`[rate_limits.roles."<role>"]`), else
//! the default (`[rate_limits]`), else none. A connection keeps what it resolved until a
//! mutation completes (the bindings may have changed) or its caller changes. With no
//! `[rate_limits]` at all the check is one branch.

use super::{Caller, Lockbox};
use crate::error::LockboxError;
use crate::iam::roles::ROLES;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// `GetPayload` and `GetPayloadEx`.
    PayloadRead,
    /// Requests that change something (secrets, versions, resources, bindings, accounts).
    Mutation,
}

impl RateKind {
    /// The kind's name in configuration, messages and metrics.
    pub(super) fn name(self) -> &'static str {
        match self {
            RateKind::PayloadRead => "payload_reads",
            RateKind::Mutation => "mutations",
        }
    }
}

/// A rate: `per_second` on average, up to `burst` at once (default: `per_second`, at least
/// one).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests a second, on average.
    pub per_second: f64,
    /// Requests at once after a quiet spell.
    pub burst: Option<f64>,
}

impl Rate {
    fn burst(&self) -> f64 {
        self.burst.unwrap_or(self.per_second).max(1.0)
    }
}

/// The rates of one subject, role or the default.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSet {
    /// Payload reads.
    pub payload_reads: Option<Rate>,
    /// Changes.
    pub mutations: Option<Rate>,
}

impl RateSet {
    fn get(&self, kind: RateKind) -> Option<Rate> {
        match kind {
            RateKind::PayloadRead => self.payload_reads,
            RateKind::Mutation => self.mutations,
        }
    }
}

/// `[rate_limits]`: the default rates, and those of roles and subjects.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Default payload reads a subject may make.
    pub payload_reads: Option<Rate>,
    /// Default changes a subject may make.
    pub mutations: Option<Rate>,
    /// By role: a subject holding it anywhere may make this many.
    pub roles: BTreeMap<String, RateSet>,
    /// By subject (`user:NAME`, `serviceAccount:ID`): wins over roles and the default.
    pub subjects: BTreeMap<String, RateSet>,
}

impl RateLimits {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.payload_reads.is_none()
            && self.mutations.is_none()
            && self.roles.is_empty()
            && self.subjects.is_empty()
    }

    /// Checks every rate and role name, saying which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let check = |at: &str, rate: Option<Rate>| match rate {
            Some(r) if !(r.per_second.is_finite() && r.per_second > 0.0) => Err(format!(
                "rate_limits: {at}: per_second must be a number above 0, got {}",
                r.per_second
            )),
            Some(Rate { burst: Some(b), .. }) if !(b.is_finite() && b >= 1.0) => Err(format!(
                "rate_limits: {at}: burst must be at least 1, got {b}"
            )),
            _ => Ok(()),
        };
        check("payload_reads", self.payload_reads)?;
        check("mutations", self.mutations)?;
        for (role, set) in &self.roles {
            if !ROLES.contains(&role.as_str()) {
                return Err(format!(
                    "rate_limits.roles: unknown role {role:?}; known roles: {}",
                    ROLES.join(", ")
                ));
            }
            check(&format!("roles.{role}.payload_reads"), set.payload_reads)?;
            check(&format!("roles.{role}.mutations"), set.mutations)?;
        }
        for (subject, set) in &self.subjects {
            check(
                &format!("subjects.{subject}.payload_reads"),
                set.payload_reads,
            )?;
            check(&format!("subjects.{subject}.mutations"), set.mutations)?;
        }
        Ok(())
    }

    /// The rate of `kind` for `subject`, who holds `roles`.
    fn rate<'a>(
        &self,
        kind: RateKind,
        subject: &str,
        roles: impl Iterator<Item = &'a str>,
    ) -> Option<Rate> {
        if let Some(rate) = self.subjects.get(subject).and_then(|s| s.get(kind)) {
            return Some(rate);
        }
        let by_role = roles
            .filter_map(|r| self.roles.get(r).and_then(|s| s.get(kind)))
            .max_by(|a, b| a.per_second.total_cmp(&b.per_second));
        by_role.or(match kind {
            RateKind::PayloadRead => self.payload_reads,
            RateKind::Mutation => self.mutations,
        })
    }
}

/// A token bucket.
#[derive(Debug)]
struct Bucket {
    rate: Rate,
    /// Tokens, and when they were counted (Unix milliseconds).
    state: Mutex<(f64, i64)>,
}

impl Bucket {
    fn new(rate: Rate, now_ms: i64) -> Self {
        Self {
            rate,
            state: Mutex::new((rate.burst(), now_ms)),
        }
    }

    /// Takes a token, or says in how many seconds one will be there.
    fn take(&self, now_ms: i64) -> Result<(), f64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = *state;
        let elapsed = (now_ms - at).max(0) as f64 / 1000.0;
        let tokens = (tokens + elapsed * self.rate.per_second).min(self.rate.burst());
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now_ms.max(at));
            Ok(())
        } else {
            *state = (tokens, now_ms.max(at));
            Err((1.0 - tokens) / self.rate.per_second)
        }
    }
}

/// The rate limits in force, and the buckets of the subjects that made requests.
#[derive(Debug)]
pub(super) struct Limiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<(RateKind, String), Arc<Bucket>>>,
}

impl Limiter {
    /// A limiter for `limits`, or none when they limit nothing.
    pub(super) fn new(limits: RateLimits) -> Option<Self> {
        (!limits.is_empty()).then(|| Self {
            limits,
            buckets: Mutex::default(),
        })
    }

    /// The bucket of `subject` for `kind` at `rate`: the one it has, or a full one when it
    /// had none or its rate changed.
    fn bucket(&self, kind: RateKind, subject: &str, rate: Rate, now_ms: i64) -> Arc<Bucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let key = (kind, subject.to_owned());
        match buckets.get(&key) {
            Some(b) if b.rate == rate => b.clone(),
            _ => {
                let b = Arc::new(Bucket::new(rate, now_ms));
                buckets.insert(key, b.clone());
                b
            }
        }
    }
}

/// What a connection resolved of its caller's rates.
#[derive(Debug, Default)]
pub struct RateMemo(Mutex<Option<Resolved>>);

#[derive(Debug)]
struct Resolved {
    /// The service's generation when resolved.
    generation: u64,
    subject: String,
    reads: Option<Arc<Bucket>>,
    mutations: Option<Arc<Bucket>>,
}

impl RateMemo {
    fn lock(&self) -> MutexGuard<'_, Option<Resolved>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Lockbox {
    /// Counts a request of `kind` against its caller's rate, refusing it with
    /// `ResourceExhausted` (and when to try again) past it. `memo` is the connection's.
    pub fn check_rate(
        &self,
        caller: &Caller,
        kind: RateKind,
        memo: &RateMemo,
    ) -> Result<(), LockboxError> {
        let Some(limiter) = &self.rate_limiter else {
            return Ok(());
        };
        let now_ms = self.clock.now_millis();
        let generation = self.generation.load(Ordering::Acquire);
        let bucket = {
            let mut memo = memo.lock();
            let stale = memo
                .as_ref()
                .is_none_or(|r| r.generation != generation || r.subject != caller.subject());
            if stale {
                let roles = self.roles_held(caller);
                let resolve = |kind| {
                    limiter
                        .limits
                        .rate(kind, caller.subject(), roles.iter().map(String::as_str))
                        .map(|rate| limiter.bucket(kind, caller.subject(), rate, now_ms))
                };
                *memo = Some(Resolved {
                    generation,
                    subject: caller.subject().to_owned(),
                    reads: resolve(RateKind::PayloadRead),
                    mutations: resolve(RateKind::Mutation),
                });
            }
            let resolved = memo.as_ref();
            match kind {
                RateKind::PayloadRead => resolved.and_then(|r| r.reads.clone()),
                RateKind::Mutation => resolved.and_then(|r| r.mutations.clone()),
            }
        };
        let Some(bucket) = bucket else {
            return Ok(());
        };
        bucket.take(now_ms).map_err(|wait| {
            self.meters.rate_limited(kind);
            LockboxError::ResourceExhausted(format!(
                "rate limit {}: {} may make {} a second (burst {}); retry in {:.1} s",
                kind.name(),
                caller.subject(),
                bucket.rate.per_second,
                bucket.rate.burst(),
                wait.max(0.1)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: f64) -> Rate {
        Rate {
            per_second,
            burst: Some(burst),
        }
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_its_rate() {
        let b = Bucket::new(rate(2.0, 3.0), 0);
        for _ in 0..3 {
            b.take(0).unwrap();
        }
        assert_eq!(b.take(0), Err(0.5));
        // Half a second later one token is back, and only one.
        b.take(500).unwrap();
        assert!(b.take(500).is_err());
        // A long quiet spell fills it to the burst, not beyond.
        for _ in 0..3 {
            b.take(60_000).unwrap();
        }
        assert!(b.take(60_000).is_err());
        // A clock that goes back takes nothing away.
        assert!(b.take(59_000).is_err());
    }

    #[test]
    fn a_subject_s_own_rate_wins_then_its_most_generous_role_then_the_default() {
        let limits: RateLimits = toml::from_str(
            "payload_reads = { per_second = 1 }\n\
             [roles.\"lockbox.payloadViewer\"]\npayload_reads = { per_second = 5 }\n\
             [roles.viewer]\npayload_reads = { per_second = 3 }\n\
             [subjects.\"user:app\"]\npayload_reads = { per_second = 100 }\n",
        )
        .unwrap();
        limits.validate().unwrap();
        let read = |subject: &str, roles: &[&str]| {
            limits
                .rate(RateKind::PayloadRead, subject, roles.iter().copied())
                .map(|r| r.per_second)
        };
        assert_eq!(read("user:app", &["viewer"]), Some(100.0));
        assert_eq!(
            read("user:x", &["viewer", "lockbox.payloadViewer"]),
            Some(5.0)
        );
        assert_eq!(read("user:x", &["lockbox.editor"]), Some(1.0));
        assert_eq!(
            limits.rate(RateKind::Mutation, "user:x", std::iter::empty()),
            None
        );
    }

    #[test]
    fn bad_rates_and_unknown_roles_are_refused_by_name() {
        let bad = |text: &str| {
            toml::from_str::<RateLimits>(text)
                .map_err(|e| e.to_string())
                .and_then(|l| l.validate())
                .unwrap_err()
        };
        assert!(bad("mutations = { per_second = 0 }").contains("mutations: per_second"));
        assert!(bad("mutations = { per_second = 1, burst = 0.5 }").contains("burst"));
        assert!(
            bad("[roles.\"lockbox.nobody\"]\nmutations = { per_second = 1 }")
                .contains("unknown role")
        );
        assert!(bad("payload_reads = { per_sec = 1 }").contains("per_sec"));
    }
}
