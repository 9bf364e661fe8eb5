//! The audit trail of relayed decisions: one line for every decision the KMS makes on behalf
//! of a relayed subject, naming the relay, the subject, the permission, the resource and the
//! outcome.
//!
//! A relayed decrypt happens on every payload read of a KMS-keyed secret, so this is on the
//! hot path. Recording a decision formats one line into a shared buffer; a background thread
//! drains the buffer to the output in chunks of whole lines, each at most [`CHUNK`] bytes so a
//! write to a pipe (journald) is atomic and never interleaves with other log output.
//!
//! The trail fails closed. A decision that cannot be recorded is refused: when the writer
//! has stopped, when its last write failed (it keeps the lines it could not write and tries
//! again every [`RETRY`]; recording resumes once a write succeeds), and when it is
//! [`MAX_BUFFERED`] bytes behind for longer than [`MAX_WAIT`]. So no line is dropped, and a
//! recorder never blocks its thread for long.
//!
//! The writer wakes for the first line after a quiet spell; under a steady stream it then
//! writes what gathered at most every [`INTERVAL`], so a busy KMS pays a few hundred
//! wake-ups a second for its trail rather than one per handful of requests. A line waits
//! at most about [`INTERVAL`] plus one write before it reaches the output (each carries the
//! time it was recorded).
//!
//! Until [`start`] is called (unit tests, embedding) decisions go to `tracing` at info level.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest single write: `PIPE_BUF` on Linux.
const CHUNK: usize = 4096;
/// Bytes waiting for the writer before recording waits.
const MAX_BUFFERED: usize = 8 << 20;
/// How long recording waits for room before it refuses the decision.
const MAX_WAIT: Duration = Duration::from_secs(1);
/// How long the writer lets lines gather after a write, while they keep coming.
const INTERVAL: Duration = Duration::from_millis(2);
/// How long the writer waits before trying a failed write again.
const RETRY: Duration = Duration::from_secs(1);
/// Capacity of each of the two line buffers; one grown past four times this by a burst (a
/// slow output) is given back once written.
const BUFFER_CAPACITY: usize = 64 * 1024;

/// The trail of this process, once started.
static SINK: OnceLock<Arc<Sink>> = OnceLock::new();

/// Why a decision could not be recorded; the decision must then be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot be written ({0}); relayed requests are refused until it can")]
pub struct AuditError(String);

/// An audit trail: a buffer of lines and the thread writing them.
struct Sink {
    state: Mutex<State>,
    /// Signalled when the buffer gains data (for the writer) or is drained, or the writer's
    /// health changes (for recorders and [`flush`]).
    changed: Condvar,
    /// How long the writer waits before trying a failed write again.
    retry: Duration,
}

struct State {
    /// Lines not yet taken by the writer.
    buffer: String,
    /// Whether the writer is writing lines it took.
    writing: bool,
    /// Whether the writer is asleep until a line arrives: only then does a recorder signal.
    idle: bool,
    /// The error of the writer's last write, until a write succeeds again.
    failure: Option<String>,
    /// Whether the writer thread is running.
    alive: bool,
}

/// One relayed decision.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    /// The enrolled identity that relayed the request.
    pub relay: &'a str,
    /// The subject the decision was made for.
    pub subject: &'a str,
    /// Permission checked.
    pub permission: &'a str,
    /// `key` or `folder`.
    pub resource_kind: &'a str,
    /// The resource id.
    pub resource_id: &'a str,
    /// Whether it was allowed.
    pub allowed: bool,
}

/// Starts the background writer; every later decision is written to `out`. Only the first
/// call has an effect.
pub fn start(out: impl Write + Send + 'static) {
    if SINK.get().is_some() {
        return;
    }
    let sink = Sink::new(RETRY);
    if SINK.set(sink.clone()).is_ok() {
        sink.spawn_writer(out);
    }
}

/// Records a relayed decision; an error when it cannot be (see the module documentation).
pub fn record(decision: Decision<'_>) -> Result<(), AuditError> {
    match SINK.get() {
        Some(sink) => sink.record(&decision, now_micros()),
        None => {
            tracing::info!(
                relay = decision.relay,
                subject = decision.subject,
                permission = decision.permission,
                resource = format!("{} {}", decision.resource_kind, decision.resource_id),
                allowed = decision.allowed,
                "relayed request"
            );
            Ok(())
        }
    }
}

/// Waits until every decision recorded so far has been written (at shutdown), or the writer
/// cannot write them.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush();
    }
}

impl Sink {
    fn new(retry: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                buffer: String::with_capacity(BUFFER_CAPACITY),
                writing: false,
                idle: false,
                failure: None,
                alive: true,
            }),
            changed: Condvar::new(),
            retry,
        })
    }

    fn spawn_writer(self: &Arc<Self>, out: impl Write + Send + 'static) {
        let sink = self.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let _alive = Alive(&sink);
                sink.write_loop(out);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the audit writer");
            self.lock().alive = false;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Appends and swaps leave the state valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, decision: &Decision<'_>, micros: i64) -> Result<(), AuditError> {
        let mut state = self.lock();
        // Read the clock only once the buffer is full: recording is on every relayed decrypt.
        let mut deadline = None;
        loop {
            if !state.alive {
                return Err(AuditError("its writer has stopped".into()));
            }
            if let Some(failure) = &state.failure {
                return Err(AuditError(format!("writing it failed: {failure}")));
            }
            if state.buffer.len() < MAX_BUFFERED {
                break;
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + MAX_WAIT);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AuditError(format!(
                    "its writer is {MAX_BUFFERED} bytes behind"
                )));
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        format_line(&mut state.buffer, micros, decision);
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
        Ok(())
    }

    fn flush(&self) {
        let mut state = self.lock();
        while (!state.buffer.is_empty() || state.writing) && state.alive && state.failure.is_none()
        {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn write_loop(&self, mut out: impl Write) {
        let mut pending = String::with_capacity(BUFFER_CAPACITY);
        loop {
            {
                let mut state = self.lock();
                state.writing = false;
                // The two buffers take turns here, so both shrink back after a burst.
                if pending.capacity() > 4 * BUFFER_CAPACITY {
                    pending = String::with_capacity(BUFFER_CAPACITY);
                }
                // Recorders waiting for room, and `flush`, may go on.
                self.changed.notify_all();
                while state.buffer.is_empty() {
                    state.idle = true;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                state.idle = false;
                std::mem::swap(&mut state.buffer, &mut pending);
                state.writing = true;
            }
            self.changed.notify_all();
            let mut written = 0;
            let mut failure = None;
            for chunk in whole_line_chunks(&pending, CHUNK) {
                if let Err(e) = out.write_all(chunk.as_bytes()) {
                    failure = Some(e);
                    break;
                }
                written += chunk.len();
            }
            let flushed = match failure {
                Some(e) => Err(e),
                None => out.flush(),
            };
            if let Err(e) = flushed {
                tracing::error!(error = %e, "writing the audit trail failed; refusing relayed \
                                             requests until it can be written");
                let mut state = self.lock();
                // Keep what was not written, ahead of anything recorded since.
                state.buffer.insert_str(0, &pending[written..]);
                state.failure = Some(e.to_string());
                drop(state);
                self.changed.notify_all();
                pending.clear();
                std::thread::sleep(self.retry);
                continue;
            }
            pending.clear();
            // Lines arrived while writing: a steady stream. Let more gather before the next
            // write, unless the buffer is filling fast.
            let gather = {
                let mut state = self.lock();
                if state.failure.take().is_some() {
                    tracing::info!("the audit trail is written again; relayed requests resume");
                    self.changed.notify_all();
                }
                !state.buffer.is_empty() && state.buffer.len() < MAX_BUFFERED / 2
            };
            if gather {
                std::thread::sleep(INTERVAL);
            }
        }
    }
}

/// Marks the writer stopped when its thread ends, by a panic included.
struct Alive<'a>(&'a Sink);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        tracing::error!("the audit writer stopped; refusing relayed requests");
        self.0.lock().alive = false;
        self.0.changed.notify_all();
    }
}

/// Splits `text` (whole lines) into pieces of at most `max` bytes that end at line ends; a
/// single longer line is its own piece.
fn whole_line_chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = if rest.len() <= max {
            rest.len()
        } else {
            // Searched as bytes: `max` may fall inside a character, a line end never does.
            let bytes = rest.as_bytes();
            match bytes[..max].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => bytes
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Appends one audit line: an RFC 3339 UTC timestamp, then `name=value` fields with the
/// free-form ones quoted and escaped.
fn format_line(out: &mut String, micros: i64, d: &Decision<'_>) {
    let (days, rem) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil_from_days(days);
    // Written field by field: a line is formatted on every relayed decrypt, and the
    // formatting machinery cost more than the rest of the decision.
    match u64::try_from(year) {
        Ok(year) if year <= 9999 => {
            let mut digits = *b"0000";
            put(&mut digits, year);
            push_ascii(out, &digits);
        }
        _ => {
            // Writing to a String cannot fail.
            let _ = write!(out, "{year:04}");
        }
    }
    // `rem` is in 0..86_400_000_000, so these are small and not negative.
    let secs = (rem / 1_000_000) as u64;
    let mut rest = *b"-00-00T00:00:00.000000";
    put(&mut rest[1..3], month.into());
    put(&mut rest[4..6], day.into());
    put(&mut rest[7..9], secs / 3600);
    put(&mut rest[10..12], secs / 60 % 60);
    put(&mut rest[13..15], secs % 60);
    put(&mut rest[16..22], (rem % 1_000_000) as u64);
    push_ascii(out, &rest);
    out.push_str("Z AUDIT lockbox-kms relayed decision: relay=");
    quoted(out, d.relay);
    out.push_str(" subject=");
    quoted(out, d.subject);
    out.push_str(" permission=");
    out.push_str(d.permission);
    out.push(' ');
    out.push_str(d.resource_kind);
    out.push('=');
    quoted(out, d.resource_id);
    out.push_str(if d.allowed {
        " allowed=true\n"
    } else {
        " allowed=false\n"
    });
}

/// The lowest digits of `n`, in decimal, into `field` (which holds zeros), right-aligned.
fn put(field: &mut [u8], mut n: u64) {
    for b in field.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Appends digits and punctuation.
fn push_ascii(out: &mut String, ascii: &[u8]) {
    out.push_str(std::str::from_utf8(ascii).unwrap_or_default());
}

/// The bytes `{:?}` writes as they are: printable ASCII but the quote and the backslash.
const WRITTEN_AS_IS: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = b != b'"' && b != b'\\';
        b += 1;
    }
    table
};

/// `s` as `{:?}` writes it: in quotes, with quotes, backslashes and anything unprintable
/// escaped, so a subject cannot forge a line or a field.
fn quoted(out: &mut String, s: &str) {
    if s.bytes().all(|b| WRITTEN_AS_IS[usize::from(b)]) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{s:?}");
    }
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift to a calendar whose years start on March 1st, so the leap day ends a year, and
    // count in 400-year eras of 146,097 days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small positive numbers by construction.
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2000-02-29, a leap day in a year divisible by 400.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        // Every day follows the previous one over a few centuries.
        let mut previous = civil_from_days(-80_000);
        for d in -79_999..80_000 {
            let next = civil_from_days(d);
            let follows =
                (next.0 == previous.0 && next.1 == previous.1 && next.2 == previous.2 + 1)
                    || (next.0 == previous.0 && next.1 == previous.1 + 1 && next.2 == 1)
                    || (next.0 == previous.0 + 1 && next.1 == 1 && next.2 == 1 && previous.1 == 12);
            assert!(follows, "{previous:?} -> {next:?}");
            previous = next;
        }
    }

    #[test]
    fn a_line_names_everything() {
        let mut line = String::new();
        let decision = Decision {
            relay: "user:lockbox",
            subject: "serviceAccount:aje0123",
            permission: "kms.keys.decrypt",
            resource_kind: "key",
            resource_id: "abj0123",
            allowed: false,
        };
        format_line(&mut line, 1_763_861_840_471_645, &decision);
        assert_eq!(
            line,
            "2025-11-23T01:37:20.471645Z AUDIT lockbox-kms relayed decision: \
             relay=\"user:lockbox\" subject=\"serviceAccount:aje0123\" \
             permission=kms.keys.decrypt key=\"abj0123\" allowed=false\n"
        );
    }

    /// The line as the formatting machinery writes it.
    fn formatted(micros: i64, d: &Decision<'_>) -> String {
        let (days, rem) = (
            micros.div_euclid(86_400_000_000),
            micros.rem_euclid(86_400_000_000),
        );
        let (year, month, day) = civil_from_days(days);
        let secs = rem / 1_000_000;
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z AUDIT lockbox-kms relayed \
             decision: relay={:?} subject={:?} permission={} {}={:?} allowed={}\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            rem % 1_000_000,
            d.relay,
            d.subject,
            d.permission,
            d.resource_kind,
            d.resource_id,
            d.allowed,
        )
    }

    #[test]
    fn lines_are_written_as_the_formatting_machinery_writes_them() {
        let odd = [
            "user:lockbox",
            "",
            "say \"hi\"",
            "back\\slash",
            "new\nline AUDIT forged",
            "tab\there",
            "caf\u{e9} \u{1f512}",
            "nul\0 del\u{7f} bidi\u{202e}",
        ];
        let times = [
            0,
            1_763_861_840_471_645,
            -1,
            -62_167_219_200_000_001,
            253_402_300_800_000_000,
            86_399_999_999,
        ];
        for (i, text) in odd.iter().enumerate() {
            for micros in times {
                let d = Decision {
                    relay: text,
                    subject: odd[(i + 1) % odd.len()],
                    permission: "kms.keys.decrypt",
                    resource_kind: "key",
                    resource_id: odd[(i + 2) % odd.len()],
                    allowed: i % 2 == 0,
                };
                let mut line = String::new();
                format_line(&mut line, micros, &d);
                assert_eq!(line, formatted(micros, &d), "{text:?} at {micros}");
            }
        }
    }

    #[test]
    fn a_chunk_limit_inside_a_character_splits_at_a_line_end() {
        // The limit falls between the two bytes of the "é".
        let text = format!("{}\u{e9}\nnext\n", "a".repeat(CHUNK - 1));
        let chunks: Vec<&str> = whole_line_chunks(&text, CHUNK).collect();
        assert_eq!(chunks.concat(), text);
        assert_eq!(
            chunks.len(),
            2,
            "{:?}",
            chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
        );
    }

    /// An output that fails while `broken` is set, and keeps what it was given.
    #[derive(Clone, Default)]
    struct Flaky {
        broken: Arc<std::sync::atomic::AtomicBool>,
        panic: Arc<std::sync::atomic::AtomicBool>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            use std::sync::atomic::Ordering::SeqCst;
            assert!(!self.panic.load(SeqCst), "the output blew up");
            if self.broken.load(SeqCst) {
                return Err(std::io::Error::other("disk full"));
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn decision(subject: &str) -> Decision<'_> {
        Decision {
            relay: "user:lockbox",
            subject,
            permission: "kms.keys.decrypt",
            resource_kind: "key",
            resource_id: "abj0123",
            allowed: true,
        }
    }

    /// Waits until the sink's state satisfies `done`.
    fn wait_until(sink: &Sink, done: impl Fn(&State) -> bool) {
        let mut state = sink.lock();
        while !done(&state) {
            state = sink.changed.wait(state).unwrap();
        }
    }

    #[test]
    fn a_failed_write_refuses_decisions_until_the_lines_it_kept_are_written() {
        use std::sync::atomic::Ordering::SeqCst;
        let out = Flaky::default();
        let sink = Sink::new(Duration::from_millis(10));
        sink.spawn_writer(out.clone());
        sink.record(&decision("user:first"), 0).unwrap();
        sink.flush();
        out.broken.store(true, SeqCst);
        sink.record(&decision("user:kept"), 0).unwrap();
        wait_until(&sink, |s| s.failure.is_some());
        let refused = sink.record(&decision("user:refused"), 0).unwrap_err();
        assert!(refused.to_string().contains("disk full"), "{refused}");

        out.broken.store(false, SeqCst);
        wait_until(&sink, |s| {
            s.failure.is_none() && s.buffer.is_empty() && !s.writing
        });
        sink.record(&decision("user:after"), 0).unwrap();
        sink.flush();
        let written = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let subjects: Vec<&str> = written
            .lines()
            .map(|l| {
                l.split(" subject=")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            subjects,
            ["\"user:first\"", "\"user:kept\"", "\"user:after\""]
        );
    }

    /// An output that takes nothing while its gate is held.
    struct Gated(Arc<Mutex<()>>);

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.0.lock().unwrap();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn buffers_grown_by_a_burst_shrink_back_once_written() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let sink = Sink::new(Duration::from_millis(10));
        sink.spawn_writer(Gated(gate.clone()));
        sink.record(&decision("user:first"), 0).unwrap();
        wait_until(&sink, |s| s.writing);
        // While the output is stuck, a burst of about 1.5 MB gathers.
        for _ in 0..10_000 {
            sink.record(&decision("user:burst"), 0).unwrap();
        }
        assert!(sink.lock().buffer.capacity() > 4 * BUFFER_CAPACITY);
        drop(held);
        sink.flush();
        // The next line is recorded into the buffer the burst was written from.
        sink.record(&decision("user:after"), 0).unwrap();
        sink.flush();
        let capacity = sink.lock().buffer.capacity();
        assert!(capacity <= 4 * BUFFER_CAPACITY, "{capacity}");
    }

    #[test]
    fn a_dead_writer_refuses_decisions() {
        use std::sync::atomic::Ordering::SeqCst;
        let out = Flaky::default();
        out.panic.store(true, SeqCst);
        let sink = Sink::new(Duration::from_millis(10));
        sink.spawn_writer(out);
        sink.record(&decision("user:last"), 0).unwrap();
        wait_until(&sink, |s| !s.alive);
        let refused = sink.record(&decision("user:refused"), 0).unwrap_err();
        assert!(refused.to_string().contains("stopped"), "{refused}");
        // Flushing does not wait for a writer that is gone.
        sink.flush();
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let text = "aaaa\nbbbb\ncccccccccc\nd\n";
        let chunks: Vec<&str> = whole_line_chunks(text, 10).collect();
        assert_eq!(chunks, ["aaaa\nbbbb\n", "cccccccccc\n", "d\n"]);
        assert_eq!(chunks.concat(), text);
        assert_eq!(whole_line_chunks("", 10).count(), 0);
    }
}
