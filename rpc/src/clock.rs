//! Time, injectable so tests move it instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync + 'static {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;

    /// Now, in milliseconds since the Unix epoch, for what counts in fractions of a second
    /// (rate limits); a clock that only has seconds gives whole seconds.
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        // A clock set before 1970 reads as 1970 rather than failing requests.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// The wall clock, as a thread of its own last read it: a read is one atomic load instead of
/// a system clock read. Servers tell time on every batch of requests (connection ages, token
/// expiry, rate limits), and whole seconds or a tick's resolution are all they need; the value
/// is at most [`TICK`](Self::TICK) behind.
#[derive(Debug)]
pub struct TickingClock {
    /// Unix milliseconds at the last tick.
    now: AtomicI64,
}

impl TickingClock {
    /// How often the clock is read.
    pub const TICK: std::time::Duration = std::time::Duration::from_millis(100);

    /// The process's ticking clock, started on first use; the system clock itself if its
    /// thread cannot start.
    pub fn shared() -> Arc<dyn Clock> {
        static CLOCK: std::sync::OnceLock<Arc<dyn Clock>> = std::sync::OnceLock::new();
        CLOCK
            .get_or_init(|| {
                let clock = Arc::new(TickingClock {
                    now: AtomicI64::new(SystemClock.now_millis()),
                });
                let ticking = clock.clone();
                let started = std::thread::Builder::new()
                    .name("clock".into())
                    .spawn(move || {
                        loop {
                            std::thread::sleep(TickingClock::TICK);
                            ticking.now.store(SystemClock.now_millis(), Ordering::Relaxed);
                        }
                    });
                match started {
                    Ok(_) => clock,
                    Err(e) => {
                        tracing::warn!(error = %e, "no clock thread; reading the system clock each time");
                        Arc::new(SystemClock)
                    }
                }
            })
            .clone()
    }
}

impl Clock for TickingClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::Relaxed).div_euclid(1000)
    }

    fn now_millis(&self) -> i64 {
        self.now.load(Ordering::Relaxed)
    }
}

/// A clock that only moves when told to. Used by tests through the server's danger-only
/// `DangerAdvanceClock` request.
#[derive(Debug)]
pub struct ManualClock {
    /// Current time in Unix seconds.
    now: AtomicI64,
}

impl ManualClock {
    /// A manual clock reading `start`.
    pub fn starting_at(start: i64) -> Self {
        Self {
            now: AtomicI64::new(start),
        }
    }

    /// Moves the clock forward by `seconds` and returns the new time.
    pub fn advance(&self, seconds: u64) -> i64 {
        let step = i64::try_from(seconds).unwrap_or(i64::MAX);
        let previous = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(step))
            })
            // The closure always returns `Some`, so the update cannot fail.
            .unwrap_or_else(|t| t);
        previous.saturating_add(step)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// How a server tells time.
#[derive(Debug, Clone)]
pub enum TimeSource {
    /// The wall clock.
    System,
    /// A manual clock for tests, moved only through the server's danger-only request.
    Manual(Arc<ManualClock>),
}

impl TimeSource {
    /// The clock to read.
    pub fn clock(&self) -> Arc<dyn Clock> {
        match self {
            TimeSource::System => TickingClock::shared(),
            TimeSource::Manual(c) => c.clone(),
        }
    }

    /// The manual clock, if this is one.
    pub fn manual(&self) -> Option<Arc<ManualClock>> {
        match self {
            TimeSource::System => None,
            TimeSource::Manual(c) => Some(c.clone()),
        }
    }

    /// A manual clock starting now if `manual`, else the wall clock.
    pub fn for_tests_if(manual: bool) -> Self {
        if manual {
            TimeSource::Manual(Arc::new(ManualClock::starting_at(SystemClock.now())))
        } else {
            TimeSource::System
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ticking_clock_follows_the_system_clock() {
        let ticking = TickingClock::shared();
        let (before, read, after) = (SystemClock.now(), ticking.now(), SystemClock.now());
        // At most one tick behind, which is well under a second.
        assert!(
            (before - 1..=after).contains(&read),
            "{before} {read} {after}"
        );
        let (before, read, after) = (
            SystemClock.now_millis(),
            ticking.now_millis(),
            SystemClock.now_millis(),
        );
        let tick = TickingClock::TICK.as_millis() as i64;
        assert!(
            (before - 2 * tick..=after).contains(&read),
            "{before} {read} {after}"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let c = ManualClock::starting_at(100);
        assert_eq!(c.now(), 100);
        assert_eq!(c.advance(50), 150);
        assert_eq!(c.now(), 150);
        assert_eq!(c.now_millis(), 150_000);
        assert_eq!(c.advance(u64::MAX), i64::MAX);
    }
}
