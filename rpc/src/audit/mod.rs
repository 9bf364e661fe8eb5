//! Audit trails: lines recorded on the request path, written by a thread of their own, and
//! chained so a changed, removed or inserted line is noticed.
//!
//! Recording formats one line into a shared buffer; the writer thread drains the buffer to
//! the output in chunks of whole lines, each at most [`CHUNK`] bytes, so a write to a pipe
//! (journald) is atomic and never interleaves with other output.
//!
//! A trail fails closed. A line that cannot be recorded is an error the caller must turn
//! into a refusal: when the writer has stopped, when its last write failed (it keeps the
//! lines it could not write and tries again every `retry`; recording resumes once a write
//! succeeds), and when it is [`MAX_BUFFERED`] bytes behind for longer than [`MAX_WAIT`]. So
//! no line is dropped, and a recorder never blocks its thread for long.
//!
//! The writer wakes for the first line after a quiet spell; under a steady stream it then
//! writes what gathered at most every [`INTERVAL`], so a busy server pays a few hundred
//! wake-ups a second for its trail rather than one per handful of requests.
//!
//! A chained trail ([`Sink::chained`]) ends every write with a chain line,
//! `{"chain":SEQ,"lines":N,"prev":"HEX","hash":"HEX"}`: `hash` is the SHA-256 of `prev`
//! and of the SHA-256 of the N lines written since the previous chain line (newlines
//! included), and `prev` is that chain line's `hash` (zeros for the first). A trail in
//! files of its own goes on from the chain its files end in ([`TrailConfig::open`]).
//! [`Sink::sign_head`] has the head signed (by lockbox-kms) and records a signature line,
//! `{"signed":SEQ,"hash":"HEX","time":"T","key":"ID","signature":"HEX"}`, over
//! [`ChainHead::signed_message`]. [`verify`] checks a trail, signatures included.
//!
//! A recorder may also count events in a [`HeldLines`] of its own (a connection repeating
//! one read) and [`hold`](Sink::hold) it: the writer asks it for its lines at its next
//! write, so a run of repeats costs the request path a count, not a line each.

mod chain;
mod file;
mod json;

pub use chain::{Broken, ChainHead, SignedHead, Verified, signature_keys, verify};
pub use file::{DEFAULT_SIGN_INTERVAL, RotatingFile, SYNC_EVERY, TrailConfig};
pub use json::{
    civil_from_days, end_json_line, now_micros, push_json_escaped, push_json_field,
    push_json_number, push_json_string, push_rfc3339, start_json_line,
};

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Largest single write: `PIPE_BUF` on Linux.
pub const CHUNK: usize = 4096;
/// Bytes waiting for the writer before recording waits.
pub const MAX_BUFFERED: usize = 8 << 20;
/// How long recording waits for room before it refuses.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// How long the writer lets lines gather after a write, while they keep coming.
pub const INTERVAL: Duration = Duration::from_millis(2);
/// Capacity of each of the two line buffers; one grown past four times this by a burst (a
/// slow output) is given back once written.
pub const BUFFER_CAPACITY: usize = 64 * 1024;

/// A signature over a chain head by a key of lockbox-kms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSignature {
    /// The signature key.
    pub key_id: String,
    /// The signature (DER).
    pub signature: Vec<u8>,
}

/// Why a line could not be recorded; what it would have recorded must then be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot be written ({0}); audited requests are refused until it can")]
pub struct AuditError(String);

/// Lines a recorder keeps back (counting repeats) until the writer asks for them.
pub trait HeldLines: Send + Sync {
    /// Appends the lines kept so far, each ending in a newline, and forgets them.
    fn drain(&self, out: &mut String);
}

/// An audit trail: a buffer of lines and the thread writing them.
pub struct Sink {
    state: Mutex<State>,
    /// Whether lines cannot be recorded now (`State::refusal` says why): read without the
    /// lock on the request path.
    refusing: AtomicBool,
    /// Signalled when the buffer gains data (for the writer) or is drained, or the writer's
    /// health changes (for recorders and [`Sink::flush`]).
    changed: Condvar,
    /// How long the writer waits before trying a failed write again.
    retry: Duration,
    /// Whether writes end with a chain line.
    chained: bool,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("chained", &self.chained)
            .finish()
    }
}

struct State {
    /// Lines not yet taken by the writer.
    buffer: String,
    /// Recorders holding lines back, to be asked for them at the next write.
    held: Vec<Arc<dyn HeldLines>>,
    /// Bytes at the head of `buffer` that a failed write gave back, already chained.
    chained_head: usize,
    /// Whether the writer is writing lines it took.
    writing: bool,
    /// Whether the writer is asleep until a line arrives: only then does a recorder signal.
    idle: bool,
    /// The error of the writer's last write, until a write succeeds again.
    failure: Option<String>,
    /// Whether the writer thread is running.
    alive: bool,
    /// The last chain line written (a chained trail).
    head: ChainHead,
    /// Lines written under a chain line (chain lines left out).
    written: u64,
    /// `written` when the head was last signed.
    signed: Option<u64>,
}

impl State {
    /// Why no line can be recorded now, if none can: the writer stopped, or its last write
    /// failed.
    fn refusal(&self) -> Option<AuditError> {
        if !self.alive {
            return Some(AuditError("its writer has stopped".into()));
        }
        let failure = self.failure.as_ref()?;
        Some(AuditError(format!("writing it failed: {failure}")))
    }
}

impl Sink {
    /// A trail whose writer retries a failed write every `retry`; start it with
    /// [`spawn_writer`](Self::spawn_writer).
    pub fn new(retry: Duration) -> Arc<Self> {
        Self::build(retry, false, ChainHead::default())
    }

    /// As [`new`](Self::new), with a chain line after every write, for an output of its own
    /// (a file): each write takes all that gathered, not [`CHUNK`] at a time.
    pub fn chained(retry: Duration) -> Arc<Self> {
        Self::build(retry, true, ChainHead::default())
    }

    /// As [`chained`](Self::chained), going on from `head`, the last chain line of the
    /// output it appends to.
    pub fn chained_after(retry: Duration, head: ChainHead) -> Arc<Self> {
        Self::build(retry, true, head)
    }

    fn build(retry: Duration, chained: bool, head: ChainHead) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                buffer: String::with_capacity(BUFFER_CAPACITY),
                held: Vec::new(),
                chained_head: 0,
                writing: false,
                idle: false,
                failure: None,
                alive: true,
                head,
                written: 0,
                signed: None,
            }),
            refusing: AtomicBool::new(false),
            changed: Condvar::new(),
            retry,
            chained,
        })
    }

    /// Starts the thread writing to `out`; call once.
    pub fn spawn_writer(self: &Arc<Self>, out: impl Write + Send + 'static) {
        let sink = self.clone();
        let spawned = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let _alive = Alive(&sink);
                sink.write_loop(out);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the audit writer");
            let mut state = self.lock();
            state.alive = false;
            self.note_health(&state);
        }
    }

    /// Publishes whether `state` refuses lines, after its writer's health changed.
    fn note_health(&self, state: &State) {
        self.refusing
            .store(state.refusal().is_some(), Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Appends and swaps leave the state valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one line: `format` appends it, newline included, to the buffer.
    pub fn record(&self, format: impl FnOnce(&mut String)) -> Result<(), AuditError> {
        thread_local! {
            /// The line being formatted: outside the lock, so recorders on other threads
            /// wait for a copy, not for the formatting.
            static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
        }
        LINE.with(|line| {
            // `format` only formats; it never records, so the line is never borrowed twice.
            let mut line = line.borrow_mut();
            line.clear();
            format(&mut line);
            self.append(&line)
        })
    }

    /// Says whether a line could be recorded now: for a request recorded once it has run
    /// (with its outcome), asked before it runs so a trail that cannot be written refuses
    /// it. Record it then with [`record_outcome`](Self::record_outcome).
    pub fn admit(&self) -> Result<(), AuditError> {
        if !self.refusing.load(Ordering::Acquire) {
            return Ok(());
        }
        self.lock().refusal().map_or(Ok(()), Err)
    }

    /// Has the writer ask `held` for its lines at its next write (waking it if it is
    /// asleep); `held` calls this again once drained, when it holds lines again. Like
    /// [`record_outcome`](Self::record_outcome), for events [`admit`](Self::admit) let
    /// happen: only a stopped writer loses them.
    pub fn hold(&self, held: Arc<dyn HeldLines>) {
        let mut state = self.lock();
        state.held.push(held);
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Records the line of a request [`admit`](Self::admit) let run: it has happened, so
    /// the line is kept even if writing has failed since (it is written with the others
    /// once writing works again) or the buffer is full. Only a stopped writer loses it.
    pub fn record_outcome(&self, format: impl FnOnce(&mut String)) -> Result<(), AuditError> {
        let mut line = String::with_capacity(256);
        format(&mut line);
        let state = self.lock();
        if !state.alive {
            return Err(AuditError("its writer has stopped".into()));
        }
        self.push(state, &line);
        Ok(())
    }

    /// Appends a formatted line, or says why it cannot be.
    fn append(&self, line: &str) -> Result<(), AuditError> {
        let mut state = self.lock();
        // Read the clock only once the buffer is full: recording is on the request path.
        let mut deadline = None;
        loop {
            if let Some(refused) = state.refusal() {
                return Err(refused);
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
        self.push(state, line);
        Ok(())
    }

    /// Adds `line` to the buffer, waking the writer if it is asleep.
    fn push(&self, mut state: MutexGuard<'_, State>, line: &str) {
        state.buffer.push_str(line);
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
    }

    /// Waits until every line recorded so far has been written (at shutdown), or the
    /// writer cannot write them.
    pub fn flush(&self) {
        let mut state = self.lock();
        while (!state.buffer.is_empty() || !state.held.is_empty() || state.writing)
            && state.alive
            && state.failure.is_none()
        {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Has `sign` sign the chain head as written and records the signature line (see
    /// [`ChainHead::signed_message`]); nothing when nothing was written, or only the last
    /// signature, since the head was last signed. Returns the head signed, if one was.
    pub async fn sign_head<F, Fut>(&self, sign: F) -> Result<Option<ChainHead>, String>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<HeadSignature, String>>,
    {
        let (head, written, signed) = {
            let state = self.lock();
            (state.head, state.written, state.signed)
        };
        if head.seq == 0 || signed.is_some_and(|at| written <= at + 1) {
            return Ok(None);
        }
        let mut time = String::new();
        push_rfc3339(&mut time, now_micros());
        let signature = sign(head.signed_message(&time)).await?;
        self.record(|out| {
            chain::push_signature_line(out, &head, &time, &signature.key_id, &signature.signature);
        })
        .map_err(|e| e.to_string())?;
        self.lock().signed = Some(written);
        Ok(Some(head))
    }

    /// Signs the chain head every `every` (see [`sign_head`](Self::sign_head)), for ever;
    /// a failure is logged and the next one tried.
    pub async fn sign_heads<F, Fut>(self: Arc<Self>, every: Duration, sign: F)
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<HeadSignature, String>>,
    {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = self.sign_head(&sign).await {
                tracing::warn!(error = %e, "could not sign the audit trail's chain head; \
                                            trying again at the next interval");
            }
        }
    }

    fn write_loop(&self, mut out: impl Write) {
        let mut pending = String::with_capacity(BUFFER_CAPACITY);
        let mut held = Vec::new();
        let mut chain = self.lock().head;
        // Lines chained but not yet written.
        let mut sealed = 0;
        loop {
            let chained_head;
            {
                let mut state = self.lock();
                state.writing = false;
                // The two buffers take turns here, so both shrink back after a burst.
                if pending.capacity() > 4 * BUFFER_CAPACITY {
                    pending = String::with_capacity(BUFFER_CAPACITY);
                }
                // Recorders waiting for room, and `flush`, may go on.
                self.changed.notify_all();
                while state.buffer.is_empty() && state.held.is_empty() {
                    state.idle = true;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                state.idle = false;
                std::mem::swap(&mut state.buffer, &mut pending);
                std::mem::swap(&mut state.held, &mut held);
                chained_head = std::mem::take(&mut state.chained_head);
                state.writing = true;
            }
            self.changed.notify_all();
            // Outside the lock: each takes its own.
            for h in held.drain(..) {
                h.drain(&mut pending);
            }
            if self.chained && pending.len() > chained_head {
                sealed += chain.seal(&mut pending, chained_head);
            }
            let mut written = 0;
            let mut failure = None;
            // A pipe (journald) takes whole lines a `PIPE_BUF` at a time, so they never
            // interleave with other output; a trail of its own takes everything at once.
            let chunk = if self.chained { usize::MAX } else { CHUNK };
            for chunk in whole_line_chunks(&pending, chunk) {
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
                tracing::error!(error = %e, "writing the audit trail failed; refusing audited \
                                             requests until it can be written");
                let mut state = self.lock();
                // Keep what was not written, ahead of anything recorded since; it is
                // chained already.
                let kept = &pending[written..];
                state.buffer.insert_str(0, kept);
                state.chained_head = kept.len();
                state.failure = Some(e.to_string());
                self.note_health(&state);
                drop(state);
                self.changed.notify_all();
                pending.clear();
                std::thread::sleep(self.retry);
                continue;
            }
            pending.clear();
            // Let lines gather before the next write, unless the buffer is filling fast.
            // Sleeping even when none came during this write matters: a writer that went
            // idle at once after a quick write would be woken by nearly every line, a
            // futex wake on the recorder's request path.
            let gather = {
                let mut state = self.lock();
                state.head = chain;
                state.written += std::mem::take(&mut sealed);
                if state.failure.take().is_some() {
                    self.note_health(&state);
                    tracing::info!("the audit trail is written again; audited requests resume");
                    self.changed.notify_all();
                }
                state.buffer.len() < MAX_BUFFERED / 2
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
        tracing::error!("the audit writer stopped; refusing audited requests");
        let mut state = self.0.lock();
        state.alive = false;
        self.0.note_health(&state);
        drop(state);
        self.0.changed.notify_all();
    }
}

/// Splits `text` (whole lines) into pieces of at most `max` bytes that end at line ends; a
/// single longer line is its own piece.
pub fn whole_line_chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A line naming `subject`, about as long as a real one.
    fn line(subject: &str) -> impl FnOnce(&mut String) + '_ {
        move |out: &mut String| {
            out.push_str("2025-11-23T01:37:20.471645Z AUDIT test relay=\"user:lockbox\" subject=");
            out.push_str(subject);
            out.push_str(" permission=kms.keys.decrypt key=\"abj0123\" allowed=true\n");
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
        sink.record(line("user:first")).unwrap();
        sink.flush();
        out.broken.store(true, SeqCst);
        sink.record(line("user:kept")).unwrap();
        wait_until(&sink, |s| s.failure.is_some());
        let refused = sink.record(line("user:refused")).unwrap_err();
        assert!(refused.to_string().contains("disk full"), "{refused}");
        let refused = sink.admit().unwrap_err();
        assert!(refused.to_string().contains("disk full"), "{refused}");

        out.broken.store(false, SeqCst);
        wait_until(&sink, |s| {
            s.failure.is_none() && s.buffer.is_empty() && !s.writing
        });
        sink.admit().unwrap();
        sink.record(line("user:after")).unwrap();
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
        assert_eq!(subjects, ["user:first", "user:kept", "user:after"]);
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
        sink.record(line("user:first")).unwrap();
        wait_until(&sink, |s| s.writing);
        // While the output is stuck, a burst of about 1.5 MB gathers.
        for _ in 0..10_000 {
            sink.record(line("user:burst")).unwrap();
        }
        assert!(sink.lock().buffer.capacity() > 4 * BUFFER_CAPACITY);
        drop(held);
        sink.flush();
        // The next line is recorded into the buffer the burst was written from.
        sink.record(line("user:after")).unwrap();
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
        sink.record(line("user:last")).unwrap();
        wait_until(&sink, |s| !s.alive);
        let refused = sink.record(line("user:refused")).unwrap_err();
        assert!(refused.to_string().contains("stopped"), "{refused}");
        let refused = sink.admit().unwrap_err();
        assert!(refused.to_string().contains("stopped"), "{refused}");
        // Flushing does not wait for a writer that is gone.
        sink.flush();
    }

    /// A recorder counting one repeated event, as a connection counts its repeated reads:
    /// the count, and whether the trail holds it.
    #[derive(Default)]
    struct Repeats(Mutex<(u32, bool)>);

    impl HeldLines for Repeats {
        fn drain(&self, out: &mut String) {
            let mut repeats = self.0.lock().unwrap();
            if repeats.0 > 0 {
                out.push_str(&format!("read count={}\n", repeats.0));
            }
            *repeats = (0, false);
        }
    }

    impl Repeats {
        fn count(self: &Arc<Self>, sink: &Sink) {
            let hold = {
                let mut repeats = self.0.lock().unwrap();
                repeats.0 += 1;
                !std::mem::replace(&mut repeats.1, true)
            };
            if hold {
                sink.hold(self.clone());
            }
        }
    }

    #[test]
    fn held_lines_are_asked_for_at_the_next_write_and_chained() {
        let out = Flaky::default();
        let sink = Sink::chained(Duration::from_millis(10));
        let repeats = Arc::new(Repeats::default());
        // Counted before the writer runs: one line for the three.
        for _ in 0..3 {
            repeats.count(&sink);
        }
        sink.record(line("user:direct")).unwrap();
        sink.spawn_writer(out.clone());
        sink.flush();
        repeats.count(&sink);
        sink.flush();
        assert!(sink.lock().held.is_empty());
        let written = String::from_utf8(out.written.lock().unwrap().clone()).unwrap();
        let events: Vec<&str> = written
            .lines()
            .filter(|l| !l.starts_with("{\"chain\""))
            .collect();
        assert_eq!(events.len(), 3, "{written}");
        assert!(events[0].contains("user:direct"), "{written}");
        assert_eq!(events[1..], ["read count=3", "read count=1"]);
        let ok = verify(written.lines(), no_signatures).unwrap();
        assert_eq!((ok.lines, ok.unchained_tail), (3, 0), "{ok:?}");
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let text = "aaaa\nbbbb\ncccccccccc\nd\n";
        let chunks: Vec<&str> = whole_line_chunks(text, 10).collect();
        assert_eq!(chunks, ["aaaa\nbbbb\n", "cccccccccc\n", "d\n"]);
        assert_eq!(chunks.concat(), text);
        assert_eq!(whole_line_chunks("", 10).count(), 0);
    }

    /// A chained trail written by `writes` rounds of `per_round` lines, through an output
    /// that fails once in the middle.
    fn no_signatures(signed: &SignedHead<'_>) -> Result<(), String> {
        panic!("no signature expected: {signed:?}")
    }

    fn chained_trail() -> String {
        use std::sync::atomic::Ordering::SeqCst;
        let out = Flaky::default();
        let sink = Sink::chained(Duration::from_millis(10));
        sink.spawn_writer(out.clone());
        for round in 0..6 {
            for i in 0..5 {
                sink.record(line(&format!("user:r{round}l{i}"))).unwrap();
            }
            sink.flush();
            if round == 2 {
                out.broken.store(true, SeqCst);
                sink.record(line("user:kept")).unwrap();
                wait_until(&sink, |s| s.failure.is_some());
                out.broken.store(false, SeqCst);
                wait_until(&sink, |s| {
                    s.failure.is_none() && s.buffer.is_empty() && !s.writing
                });
            }
        }
        String::from_utf8(out.written.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_chained_trail_verifies_and_any_change_is_found_at_its_place() {
        let trail = chained_trail();
        let lines: Vec<&str> = trail.lines().collect();
        let ok = verify(lines.iter().copied(), no_signatures).unwrap();
        assert_eq!(ok.lines, 31);
        assert!(ok.chain_lines >= 7, "{ok:?}");
        assert_eq!(ok.unchained_tail, 0);
        assert!(lines.iter().any(|l| l.contains("user:kept")));

        let at = lines.iter().position(|l| l.contains("user:r3l2")).unwrap();
        let changed: Vec<String> = lines
            .iter()
            .map(|l| l.replace("user:r3l2", "user:r3l9"))
            .collect();
        let e = verify(changed.iter().map(String::as_str), no_signatures)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a line there was changed, removed or inserted"),
            "{e}"
        );
        let reported: usize = e["line ".len()..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reported > at + 1, "{e}");
        let range = e.split("lines ").nth(1).unwrap();
        let from: usize = range.split(' ').next().unwrap().parse().unwrap();
        assert!(from <= at + 1, "{e}");

        let mut removed = lines.clone();
        removed.remove(at);
        assert!(verify(removed.iter().copied(), no_signatures).is_err());
        let mut inserted = lines.clone();
        inserted.insert(at, "forged");
        assert!(verify(inserted.iter().copied(), no_signatures).is_err());
        // A whole write removed with its chain line: the next does not follow.
        let first_chain = lines
            .iter()
            .position(|l| l.starts_with("{\"chain\":"))
            .unwrap();
        let second_chain = first_chain
            + 1
            + lines[first_chain + 1..]
                .iter()
                .position(|l| l.starts_with("{\"chain\":"))
                .unwrap();
        let mut cut: Vec<&str> = lines[..=first_chain].to_vec();
        cut.extend_from_slice(&lines[second_chain + 1..]);
        let e = verify(cut.iter().copied(), no_signatures)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not follow"), "{e}");
        // A trail whose start was rotated away still verifies from its first chain line on.
        let tail = verify(lines[first_chain + 1..].iter().copied(), no_signatures).unwrap();
        assert_eq!(tail.chain_lines, ok.chain_lines - 1);
    }

    /// A stand-in for a KMS signature: the SHA-256 of the message under a "key".
    fn fake_sign(key: &str, message: &str) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        Sha256::new()
            .chain_update(key)
            .chain_update(message)
            .finalize()
            .to_vec()
    }

    fn fake_check(signed: &SignedHead<'_>) -> Result<(), String> {
        if fake_sign(signed.key_id, &signed.message) == signed.signature {
            Ok(())
        } else {
            Err("the signature does not match".into())
        }
    }

    async fn sign(sink: &Sink) -> Option<ChainHead> {
        sink.sign_head(|message| async move {
            Ok(HeadSignature {
                key_id: "key1".into(),
                signature: fake_sign("key1", &message),
            })
        })
        .await
        .unwrap()
    }

    fn written(out: &Flaky) -> String {
        String::from_utf8(out.written.lock().unwrap().clone()).unwrap()
    }

    #[tokio::test]
    async fn a_signed_head_vouches_for_the_lines_before_it_and_a_rewrite_is_found() {
        let out = Flaky::default();
        let sink = Sink::chained(Duration::from_millis(10));
        sink.spawn_writer(out.clone());
        assert_eq!(sign(&sink).await, None, "nothing written yet");
        for i in 0..4 {
            sink.record(line(&format!("user:a{i}"))).unwrap();
        }
        sink.flush();
        let head = sign(&sink).await.unwrap();
        sink.flush();
        // Only the signature was written since: nothing to sign.
        assert_eq!(sign(&sink).await, None);
        sink.record(line("user:after")).unwrap();
        sink.flush();
        let trail = written(&out);
        let lines: Vec<&str> = trail.lines().collect();
        let ok = verify(lines.iter().copied(), fake_check).unwrap();
        assert_eq!(ok.signatures, 1);
        let signed_line = lines
            .iter()
            .position(|l| l.contains(&format!("\"chain\":{},", head.seq)))
            .unwrap();
        assert_eq!(ok.signed_through, Some(signed_line as u64 + 1));
        assert_eq!(ok.unsigned_lines, 1, "{trail}");

        // A forged signature is refused at its line.
        let signature_at = lines
            .iter()
            .position(|l| l.starts_with("{\"signed\":"))
            .unwrap();
        let forged: Vec<String> = lines
            .iter()
            .map(|l| {
                if l.starts_with("{\"signed\":") {
                    let cut = l.rfind("\",\"signature\":\"").unwrap();
                    format!("{}\",\"signature\":\"{}\"}}", &l[..cut], "ab".repeat(32))
                } else {
                    (*l).to_owned()
                }
            })
            .collect();
        let e = verify(forged.iter().map(String::as_str), fake_check).unwrap_err();
        assert!(e.reason.contains("does not hold"), "{e}");
        // It breaks the chain too; checked without the chain, the signature is what fails.
        assert!(e.line > signature_at as u64, "{e}");

        // Someone who can write the files rewrites a line and chains everything again: the
        // chain holds, the signature does not.
        let rewritten = rechain(&lines, |l| l.replace("user:a1", "user:zz"));
        let e = verify(rewritten.iter().map(String::as_str), fake_check).unwrap_err();
        assert_eq!(e.line, signature_at as u64 + 1, "{e}");
        assert!(e.reason.contains("rewritten"), "{e}");
        // Without its signature lines, such a rewrite verifies but vouches for nothing.
        let stripped: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with("{\"signed\":"))
            .collect();
        let unsigned = verify(
            rechain(&stripped, |l| l.replace("user:a1", "user:zz"))
                .iter()
                .map(String::as_str),
            fake_check,
        )
        .unwrap();
        assert_eq!((unsigned.signatures, unsigned.signed_through), (0, None));
        assert_eq!(unsigned.unsigned_lines, 5);
    }

    /// `lines` with `edit` applied to each event line and every chain line made again, as
    /// someone able to write the files could.
    fn rechain(lines: &[&str], edit: impl Fn(&str) -> String) -> Vec<String> {
        let mut head = ChainHead::default();
        let mut covered = String::new();
        let mut out = Vec::new();
        for l in lines {
            if l.starts_with("{\"chain\":") {
                let mut text = std::mem::take(&mut covered);
                let from = text.len();
                head.seal(&mut text, 0);
                out.push(text[from..].trim_end().to_owned());
            } else {
                let edited = edit(l);
                covered.push_str(&edited);
                covered.push('\n');
                out.push(edited);
            }
        }
        out
    }

    #[test]
    fn a_trail_opened_again_goes_on_with_its_chain_and_chains_a_cut_tail() {
        let dir = tempfile::tempdir().unwrap();
        let config = TrailConfig {
            dir: Some(dir.path().to_owned()),
            ..TrailConfig::default()
        };
        let path = dir.path().join("audit.jsonl");
        for run in 0..3 {
            let sink = config.open("audit.jsonl").unwrap().unwrap();
            for i in 0..3 {
                sink.record(line(&format!("user:run{run}line{i}"))).unwrap();
            }
            sink.flush();
        }
        // A crash cut the last write short: two lines and half a chain line.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&line_text("user:cut1"));
        text.push_str(&line_text("user:cut2"));
        text.push_str("{\"chain\":99,\"lin");
        std::fs::write(&path, &text).unwrap();
        let sink = config.open("audit.jsonl").unwrap().unwrap();
        sink.record(line("user:after")).unwrap();
        sink.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let ok = verify(text.lines(), no_signatures).unwrap();
        assert_eq!(ok.lines, 3 * 3 + 3 + 1, "{text}");
        assert_eq!(ok.unchained_tail, 0);
        let seqs: Vec<u64> = text
            .lines()
            .filter(|l| l.ends_with("\"}"))
            .filter_map(|l| l.strip_prefix("{\"chain\":"))
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }

    fn line_text(subject: &str) -> String {
        let mut out = String::new();
        line(subject)(&mut out);
        out
    }

    #[tokio::test(start_paused = true)]
    async fn the_head_is_signed_at_every_interval_when_lines_were_written() {
        let out = Flaky::default();
        let sink = Sink::chained(Duration::from_millis(10));
        sink.spawn_writer(out.clone());
        let signer = tokio::spawn(sink.clone().sign_heads(
            Duration::from_secs(60),
            |message| async move {
                Ok(HeadSignature {
                    key_id: "key1".into(),
                    signature: fake_sign("key1", &message),
                })
            },
        ));
        let signatures = |out: &Flaky| {
            written(out)
                .lines()
                .filter(|l| l.starts_with("{\"signed\":"))
                .count()
        };
        for round in 1..=3 {
            sink.record(line("user:busy")).unwrap();
            sink.flush();
            // Just past the next tick: the signer has run.
            tokio::time::sleep(Duration::from_secs(61)).await;
            sink.flush();
            assert_eq!(signatures(&out), round);
        }
        // A quiet minute signs nothing.
        tokio::time::sleep(Duration::from_secs(61)).await;
        sink.flush();
        assert_eq!(signatures(&out), 3);
        signer.abort();
        let trail = written(&out);
        let ok = verify(trail.lines(), fake_check).unwrap();
        assert_eq!((ok.signatures, ok.unsigned_lines), (3, 0));
    }
}
