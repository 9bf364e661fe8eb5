//! What the front-end counts beyond the requests: each cryptographic operation by key and
//! outcome, and the decisions taken on requests a relay made for its callers. Kept in
//! tables of atomics like the request series (every read of a secret under its own KMS key
//! passes here), with the last key each thread counted at hand.
//!
//! A key label is only ever the id of a key that exists: an operation on an id a caller
//! made up counts under `key="unknown"`, so no caller can grow the series without bound.

use crate::service::Kms;
use lockbox_proto::ErrorCode;
use lockbox_proto::ids::IdHashing;
use lockbox_proto::kms::KmsRequest;
use lockbox_rpc::metrics::Metrics;
use lockbox_rpc::metrics::requests::{CODES, code_index, code_label};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

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

/// Counts by operation and code, for one key.
type KeyCounts = Arc<[AtomicU64]>;

/// The front-end's counters, in tables of atomics rendered with the exporter's series: on
/// the path of every read of a secret under its own KMS key.
pub(crate) struct OperationMeter {
    /// Tells this meter's entries in a thread's cache from another's.
    id: usize,
    /// By key id. Only ids of keys that exist (which this process made) are inserted, so
    /// the unkeyed id hasher is safe here; a lookup of any other id just misses.
    by_key: Arc<RwLock<HashMap<String, KeyCounts, IdHashing>>>,
    /// Relayed requests allowed, denied, and failed otherwise.
    decisions: Arc<[AtomicU64; 3]>,
}

impl std::fmt::Debug for OperationMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationMeter").finish_non_exhaustive()
    }
}

thread_local! {
    /// The key this thread counted last, with its counts: a key read again and again (a
    /// secret's reads) is counted without the map's lock. (meter, key id, counts).
    static LAST: RefCell<Option<(usize, String, KeyCounts)>> = const { RefCell::new(None) };
}

/// Meter ids.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl OperationMeter {
    /// The counters, or `None` while metrics are off.
    pub(crate) fn new(metrics: &Metrics) -> Option<Self> {
        let meter = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            by_key: Arc::default(),
            decisions: Arc::new([const { AtomicU64::new(0) }; 3]),
        };
        let (by_key, decisions) = (meter.by_key.clone(), meter.decisions.clone());
        metrics
            .render_also(move |out| render(&by_key, &decisions, out))
            .then_some(meter)
    }

    /// Adds one to count `slot` of `key`, whose counts are created on first use.
    fn count(&self, key: &str, slot: usize) {
        // The thread's last key, counted in place: no lock, no reference taken.
        let counted = LAST.with_borrow(|last| match last {
            Some((id, k, counts)) if *id == self.id && k == key => {
                counts[slot].fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        });
        if counted {
            return;
        }
        let known = self
            .by_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        let counts = known.unwrap_or_else(|| {
            self.by_key
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.to_owned())
                .or_insert_with(|| {
                    (0..OPERATIONS.len() * CODES)
                        .map(|_| AtomicU64::new(0))
                        .collect()
                })
                .clone()
        });
        counts[slot].fetch_add(1, Ordering::Relaxed);
        LAST.set(Some((self.id, key.to_owned(), counts)));
    }

    /// Counts operation `op` on `key_id` that ended with `error` (none: success).
    pub(crate) fn operation(&self, kms: &Kms, op: usize, key_id: &str, error: Option<ErrorCode>) {
        let key = if error.is_none() || kms.key_exists(key_id) {
            key_id
        } else {
            "unknown"
        };
        self.count(key, op * CODES + code_index(error));
    }

    /// Counts the decision on a relayed request that ended with `error` (none: allowed).
    pub(crate) fn decision(&self, error: Option<ErrorCode>) {
        let i = match error {
            None => 0,
            Some(ErrorCode::PermissionDenied | ErrorCode::Unauthenticated) => 1,
            Some(_) => 2,
        };
        self.decisions[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters in the text format.
fn render(
    by_key: &RwLock<HashMap<String, KeyCounts, IdHashing>>,
    decisions: &[AtomicU64; 3],
    out: &mut String,
) {
    out.push_str(
        "# HELP lockbox_kms_operations_total Cryptographic operations, by operation, key and \
         code.\n# TYPE lockbox_kms_operations_total counter\n",
    );
    let by_key = by_key.read().unwrap_or_else(|p| p.into_inner());
    let mut keys: Vec<_> = by_key.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, counts) in keys {
        for (slot, n) in counts.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "lockbox_kms_operations_total{{operation=\"{}\",key=\"{key}\",code=\"{}\"}} {n}",
                    OPERATIONS[slot / CODES],
                    code_label(slot % CODES)
                );
            }
        }
    }
    out.push_str(
        "# HELP lockbox_kms_relayed_decisions_total Requests a relay (lockboxd) made on behalf \
         of its callers, by outcome: allowed, denied (the caller lacks the KMS role), failed \
         (any other error).\n# TYPE lockbox_kms_relayed_decisions_total counter\n",
    );
    for (outcome, n) in ["allowed", "denied", "failed"].iter().zip(decisions) {
        let _ = writeln!(
            out,
            "lockbox_kms_relayed_decisions_total{{outcome=\"{outcome}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
}
