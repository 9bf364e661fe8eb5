//! Group commit: many mutations, one fsync.
//!
//! A mutation applies its batch ([`GroupCommit::apply`]: atomic and visible at once, not yet
//! durable) while it holds the service's writer lock, takes a [`Ticket`], releases the lock,
//! and waits for the ticket to become durable ([`GroupCommit::durable`]) before it answers.
//! One syncer thread loops: when a ticket is waiting, it notes how many batches have been
//! applied, syncs the store once, and declares all of them durable. The batches applied while
//! one sync runs wait together for the next — and when some did, the syncer gives the next
//! group up to [`GATHER`] to grow — so under load one fsync covers many mutations, and a lone
//! mutation costs one fsync as before.
//!
//! What a reader may see: a batch is visible from the moment it is applied, up to one sync
//! before it is durable. Its writer has not been answered yet; should the machine crash in
//! that window, the batch is lost and its writer was never told it succeeded. This is the
//! same window as Redis with `appendfsync always`.
//!
//! A failed sync poisons the store: after it the kernel may have dropped the pages it could
//! not write, so no later sync can be trusted to cover earlier batches. Every writer still
//! waiting is told its change may or may not have been saved ([`StoreError::Poisoned`]), no
//! further batch is applied, and [`GroupCommit::poisoned`] completes so the process can exit
//! for its supervisor to restart it on what the disk holds. The same happens if the syncer
//! thread dies.

use super::{Batch, KvStore, StoreError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A batch's place in the apply order; durable once the syncer has passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[must_use = "a mutation must wait for its ticket before answering"]
pub struct Ticket(u64);

impl Ticket {
    /// The ticket of an empty batch: nothing to wait for.
    pub const NOTHING: Ticket = Ticket(0);
}

/// How far the syncer has come.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    synced: u64,
    /// Why the store is poisoned, once a sync failed or the syncer stopped: no ticket past
    /// `synced` will become durable.
    poisoned: Option<Arc<str>>,
}

struct Shared {
    kv: Arc<dyn KvStore>,
    /// The last ticket handed out; held while applying, so tickets follow the apply order.
    applied: Mutex<u64>,
    /// What the syncer is asked to do; `wake` signals it.
    wanted: Mutex<Wanted>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// The syncer's series, once metrics are on.
    meters: std::sync::OnceLock<SyncMeters>,
}

/// What the syncer records of each sync.
struct SyncMeters {
    /// Batches made durable by one sync.
    group: metrics::Histogram,
    /// How long the sync took.
    took: metrics::Histogram,
}

/// The syncer's instructions.
#[derive(Default)]
struct Wanted {
    /// The highest ticket waiting to be synced.
    ticket: u64,
    /// While the syncer sleeps: the ticket that should wake it. Appliers signal only when
    /// they reach it, so a busy syncer is not woken by every batch of the group it gathers.
    wake_at: Option<u64>,
    /// Set when the syncer should finish what is waiting and stop.
    stop: bool,
}

/// Applies batches and syncs them in groups. Dropping it syncs what is waiting and stops the
/// syncer thread.
pub struct GroupCommit {
    shared: Arc<Shared>,
    /// The syncer thread, joined on drop: it holds the store, which must be closed before the
    /// process exits (RocksDB aborts if its static state is torn down under a live database).
    syncer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each guarded value is a plain number, consistent even if a holder panicked.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCommit {
    /// Group commit over `kv`, with its syncer thread.
    pub fn new(kv: Arc<dyn KvStore>) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            kv,
            applied: Mutex::new(0),
            wanted: Mutex::new(Wanted::default()),
            wake: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
            meters: std::sync::OnceLock::new(),
        });
        let for_syncer = shared.clone();
        let syncer = std::thread::Builder::new()
            .name("wal-sync".into())
            .spawn(move || {
                let watch = SyncerWatch(&for_syncer);
                sync_loop(&for_syncer);
                std::mem::forget(watch);
            })
            .map_err(|e| StoreError::Open(format!("cannot start the WAL sync thread: {e}")))?;
        Ok(Self {
            shared,
            syncer: Some(syncer),
        })
    }

    /// Keeps the syncer's series in `metrics`: the batches each sync makes durable and how
    /// long it takes.
    pub fn instrument(&self, metrics: &lockbox_rpc::metrics::Metrics) {
        if metrics.is_on() {
            let _ = self.shared.meters.set(SyncMeters {
                group: metrics.histogram(
                    "lockbox_store_sync_group_size",
                    "Mutations made durable by one write-ahead log sync (group commit).",
                    &[],
                ),
                took: metrics.histogram(
                    "lockbox_store_sync_duration_seconds",
                    "Time one write-ahead log sync (fsync) took.",
                    &[],
                ),
            });
        }
    }

    /// Applies `batch` atomically; it is visible now and durable once its ticket is.
    pub fn apply(&self, batch: Batch) -> Result<Ticket, StoreError> {
        if batch.is_empty() {
            return Ok(Ticket::NOTHING);
        }
        if let Some(why) = &self.shared.progress.borrow().poisoned {
            return Err(StoreError::Poisoned(why.to_string()));
        }
        let ticket = {
            let mut applied = lock(&self.shared.applied);
            self.shared.kv.apply(batch)?;
            *applied += 1;
            *applied
        };
        let due = {
            let mut wanted = lock(&self.shared.wanted);
            wanted.ticket = wanted.ticket.max(ticket);
            let due = wanted.wake_at.is_some_and(|at| wanted.ticket >= at);
            if due {
                wanted.wake_at = None;
            }
            due
        };
        if due {
            self.shared.wake.notify_one();
        }
        Ok(Ticket(ticket))
    }

    /// Waits until the batch of `ticket` is durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        let mut progress = self.shared.progress.subscribe();
        loop {
            {
                let now = progress.borrow_and_update();
                if now.synced >= ticket.0 {
                    return Ok(());
                }
                if let Some(why) = &now.poisoned {
                    return Err(StoreError::Poisoned(why.to_string()));
                }
            }
            progress
                .changed()
                .await
                .map_err(|_| StoreError::Poisoned("the WAL sync thread stopped".into()))?;
        }
    }

    /// Completes, with the reason, once the store is poisoned.
    pub async fn poisoned(&self) -> Arc<str> {
        let mut progress = self.shared.progress.subscribe();
        loop {
            if let Some(why) = &progress.borrow_and_update().poisoned {
                return why.clone();
            }
            if progress.changed().await.is_err() {
                return "the WAL sync thread stopped".into();
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        lock(&self.shared.wanted).stop = true;
        self.shared.wake.notify_one();
        if let Some(syncer) = self.syncer.take()
            && syncer.join().is_err()
        {
            tracing::error!("the WAL sync thread panicked");
        }
    }
}

/// How long the syncer lets a group grow when batches arrived during the previous sync.
const GATHER: Duration = Duration::from_micros(200);
/// A group this large is synced without waiting out [`GATHER`].
const FULL_GROUP: u64 = 64;

/// Poisons the store if the syncer thread ends other than by being stopped (a panic); a
/// normal end forgets it.
struct SyncerWatch<'a>(&'a Shared);

impl Drop for SyncerWatch<'_> {
    fn drop(&mut self) {
        tracing::error!("the WAL sync thread died");
        poison(self.0, "the WAL sync thread died".into());
    }
}

fn poison(shared: &Shared, why: Arc<str>) {
    shared.progress.send_modify(|p| {
        p.poisoned.get_or_insert(why);
    });
}

fn sync_loop(shared: &Shared) {
    let mut done = 0;
    // Whether batches were applied while the last sync ran: the sign of a write load.
    let mut busy = false;
    loop {
        {
            let mut wanted = lock(&shared.wanted);
            while wanted.ticket <= done && !wanted.stop {
                wanted.wake_at = Some(done + 1);
                wanted = shared.wake.wait(wanted).unwrap_or_else(|p| p.into_inner());
            }
            if wanted.ticket <= done {
                // Stopping, and nothing is waiting.
                return;
            }
            // Under load, a moment's wait lets more writers join this sync; alone, a
            // mutation is synced at once.
            let deadline = Instant::now() + GATHER;
            while busy && wanted.ticket < done + FULL_GROUP && !wanted.stop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                wanted.wake_at = Some(done + FULL_GROUP);
                wanted = shared
                    .wake
                    .wait_timeout(wanted, deadline - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            wanted.wake_at = None;
        }
        // Everything applied by now is covered by this sync, waiting or not.
        let target = *lock(&shared.applied);
        let started = Instant::now();
        let result = shared.kv.sync();
        if let Some(meters) = shared.meters.get() {
            meters.took.record(started.elapsed().as_secs_f64());
            meters.group.record((target - done) as f64);
        }
        busy = *lock(&shared.applied) > target;
        done = target;
        match result {
            Ok(()) => shared.progress.send_modify(|p| p.synced = target),
            Err(e) => {
                tracing::error!(error = %e, "syncing the write-ahead log failed; the store is poisoned");
                poison(
                    shared,
                    format!("syncing the write-ahead log failed: {e}").into(),
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Entry, Scan, Table};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Counts applies and syncs; a sync can be made to fail once.
    #[derive(Default)]
    struct Counting {
        applied: AtomicU64,
        /// `applied` as of each successful sync.
        synced_upto: Mutex<Vec<u64>>,
        fail_next: AtomicUsize,
        /// Makes every sync panic, killing the syncer thread.
        explode: std::sync::atomic::AtomicBool,
    }

    impl KvStore for Counting {
        fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn scan(&self, _: Table, _: Scan<'_>) -> Result<Vec<Entry>, StoreError> {
            Ok(Vec::new())
        }
        fn write(&self, _: Batch) -> Result<(), StoreError> {
            Ok(())
        }
        fn apply(&self, _: Batch) -> Result<(), StoreError> {
            self.applied.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn sync(&self) -> Result<(), StoreError> {
            assert!(!self.explode.load(Ordering::SeqCst), "the sync blew up");
            if self.fail_next.swap(0, Ordering::SeqCst) > 0 {
                return Err(StoreError::Engine("disk on fire".into()));
            }
            let upto = self.applied.load(Ordering::SeqCst);
            lock(&self.synced_upto).push(upto);
            Ok(())
        }
    }

    fn one_put() -> Batch {
        let mut batch = Batch::default();
        batch.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
        batch
    }

    #[tokio::test]
    async fn every_ticket_is_durable_after_a_sync_that_covers_it() {
        let kv = Arc::new(Counting::default());
        let group = GroupCommit::new(kv.clone()).unwrap();
        let tickets: Vec<Ticket> = (0..100).map(|_| group.apply(one_put()).unwrap()).collect();
        for t in &tickets {
            group.durable(*t).await.unwrap();
        }
        let syncs = lock(&kv.synced_upto).clone();
        assert!(syncs.last().is_some_and(|&n| n == 100), "{syncs:?}");
        // 100 batches applied before anyone waited need far fewer than 100 syncs.
        assert!(syncs.len() < 100, "{} syncs", syncs.len());
        assert_eq!(group.apply(Batch::default()).unwrap(), Ticket::NOTHING);
        group.durable(Ticket::NOTHING).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_are_all_woken() {
        // Writers that apply while the syncer sleeps, gathers or syncs must all be answered:
        // a lost wake-up would leave one waiting for ever (caught by the timeout).
        let kv = Arc::new(Counting::default());
        let group = Arc::new(GroupCommit::new(kv.clone()).unwrap());
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let group = group.clone();
                tokio::spawn(async move {
                    for _ in 0..300 {
                        let ticket = group.apply(one_put()).unwrap();
                        group.durable(ticket).await.unwrap();
                    }
                })
            })
            .collect();
        let all = async {
            for w in writers {
                w.await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("a writer was never told its batch was durable");
        assert_eq!(lock(&kv.synced_upto).last().copied(), Some(16 * 300));
    }

    #[tokio::test]
    async fn a_failed_sync_poisons_the_store() {
        let kv = Arc::new(Counting::default());
        kv.fail_next.store(1, Ordering::SeqCst);
        let group = GroupCommit::new(kv.clone()).unwrap();
        let first = group.apply(one_put()).unwrap();
        let err = group.durable(first).await.unwrap_err();
        assert!(matches!(err, StoreError::Poisoned(_)), "{err}");
        assert!(err.to_string().contains("disk on fire"), "{err}");
        // Nothing more is applied, though the disk might work again.
        let refused = group.apply(one_put()).unwrap_err();
        assert!(matches!(refused, StoreError::Poisoned(_)), "{refused}");
        assert_eq!(kv.applied.load(Ordering::SeqCst), 1);
        assert!(group.poisoned().await.contains("disk on fire"));
    }

    #[tokio::test]
    async fn a_dead_syncer_fails_its_waiters_instead_of_leaving_them_hanging() {
        let kv = Arc::new(Counting::default());
        kv.explode.store(true, Ordering::SeqCst);
        let group = GroupCommit::new(kv).unwrap();
        let ticket = group.apply(one_put()).unwrap();
        let err = group.durable(ticket).await.unwrap_err();
        assert!(err.to_string().contains("died"), "{err}");
        assert!(group.apply(one_put()).is_err());
    }
}
