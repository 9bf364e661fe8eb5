//! What the front-end counts beyond the requests: each cryptographic operation by key and
//! outcome, and the decisions taken on requests a relay made for its callers.
//!
//! A key label is only ever the id of a key that exists: an operation on an id a caller
//! made up counts under `key="unknown"`, so no caller can grow the series without bound.

use crate::service::Kms;
use lockbox_proto::ErrorCode;
use lockbox_proto::ids::IdHashing;
use lockbox_proto::kms::KmsRequest;
use lockbox_rpc::metrics::Metrics;
use lockbox_rpc::metrics::requests::{CODES, code_index, code_label};
use metrics::Counter;
use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

/// The operations counted by key.
const OPERATIONS: [&str; 6] = [
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "Sign",
    "SignHash",
];

/// The index of `Decrypt` in [`OPERATIONS`].
pub(crate) const DECRYPT: usize = 1;

/// The operation a request is and the key it uses, if it is one counted by key.
pub(crate) fn operation(request: &KmsRequest) -> Option<(usize, &str)> {
    use KmsRequest as R;
    Some(match request {
        R::Encrypt { key_id, .. } => (0, key_id),
        R::Decrypt { key_id, .. } => (1, key_id),
        R::ReEncrypt { key_id, .. } => (2, key_id),
        R::GenerateDataKey { key_id, .. } => (3, key_id),
        R::Sign { key_id, .. } => (4, key_id),
        R::SignHash { key_id, .. } => (5, key_id),
        _ => return None,
    })
}

/// Counters by operation and code, for one key.
type KeyCounters = Box<[OnceLock<Counter>]>;

/// The front-end's counters.
pub(crate) struct OperationMeter {
    metrics: Metrics,
    /// By key id. Only ids of keys that exist (which this process made) are inserted, so
    /// the unkeyed id hasher is safe here; a lookup of any other id just misses.
    by_key: RwLock<HashMap<String, KeyCounters, IdHashing>>,
    /// Relayed requests allowed, denied, and failed otherwise.
    decisions: [Counter; 3],
}

impl std::fmt::Debug for OperationMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationMeter").finish_non_exhaustive()
    }
}

impl OperationMeter {
    /// The counters, or `None` while metrics are off.
    pub(crate) fn new(metrics: &Metrics) -> Option<Self> {
        if !metrics.is_on() {
            return None;
        }
        let decision = |outcome| {
            metrics.counter(
                "lockbox_kms_relayed_decisions_total",
                "Requests a relay (lockboxd) made on behalf of its callers, by outcome: \
                 allowed, denied (the caller lacks the KMS role), failed (any other error).",
                &[("outcome", outcome)],
            )
        };
        Some(Self {
            metrics: metrics.clone(),
            by_key: RwLock::default(),
            decisions: [decision("allowed"), decision("denied"), decision("failed")],
        })
    }

    /// Counts operation `op` on `key_id` that ended with `error` (none: success).
    pub(crate) fn operation(&self, kms: &Kms, op: usize, key_id: &str, error: Option<ErrorCode>) {
        let code = code_index(error);
        let key = if error.is_none() || kms.key_exists(key_id) {
            key_id
        } else {
            "unknown"
        };
        let slot = op * CODES + code;
        let known = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = known.get(key).and_then(|c| c[slot].get()) {
            counter.increment(1);
            return;
        }
        drop(known);
        let mut known = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        let counters = known.entry(key.to_owned()).or_insert_with(|| {
            (0..OPERATIONS.len() * CODES)
                .map(|_| OnceLock::new())
                .collect()
        });
        counters[slot]
            .get_or_init(|| {
                self.metrics.counter(
                    "lockbox_kms_operations_total",
                    "Cryptographic operations, by operation, key and code.",
                    &[
                        ("operation", OPERATIONS[op]),
                        ("key", key),
                        ("code", code_label(code)),
                    ],
                )
            })
            .increment(1);
    }

    /// Counts the decision on a relayed request that ended with `error` (none: allowed).
    pub(crate) fn decision(&self, error: Option<ErrorCode>) {
        let i = match error {
            None => 0,
            Some(ErrorCode::PermissionDenied | ErrorCode::Unauthenticated) => 1,
            Some(_) => 2,
        };
        self.decisions[i].increment(1);
    }
}
