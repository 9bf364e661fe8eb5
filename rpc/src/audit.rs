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
//! included), and `prev` is that chain line's `hash` (zeros for the first). [`verify`]
//! checks a trail.

use lockbox_proto::bytes::hex;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Why a line could not be recorded; what it would have recorded must then be refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail cannot be written ({0}); audited requests are refused until it can")]
pub struct AuditError(String);

/// An audit trail: a buffer of lines and the thread writing them.
pub struct Sink {
    state: Mutex<State>,
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
}

impl Sink {
    /// A trail whose writer retries a failed write every `retry`; start it with
    /// [`spawn_writer`](Self::spawn_writer).
    pub fn new(retry: Duration) -> Arc<Self> {
        Self::build(retry, false)
    }

    /// As [`new`](Self::new), with a chain line after every write, for an output of its own
    /// (a file): each write takes all that gathered, not [`CHUNK`] at a time.
    pub fn chained(retry: Duration) -> Arc<Self> {
        Self::build(retry, true)
    }

    fn build(retry: Duration, chained: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                buffer: String::with_capacity(BUFFER_CAPACITY),
                chained_head: 0,
                writing: false,
                idle: false,
                failure: None,
                alive: true,
            }),
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
            self.lock().alive = false;
        }
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

    /// Appends a formatted line, or says why it cannot be.
    fn append(&self, line: &str) -> Result<(), AuditError> {
        let mut state = self.lock();
        // Read the clock only once the buffer is full: recording is on the request path.
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
        state.buffer.push_str(line);
        let wake = std::mem::take(&mut state.idle);
        drop(state);
        if wake {
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Waits until every line recorded so far has been written (at shutdown), or the
    /// writer cannot write them.
    pub fn flush(&self) {
        let mut state = self.lock();
        while (!state.buffer.is_empty() || state.writing) && state.alive && state.failure.is_none()
        {
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn write_loop(&self, mut out: impl Write) {
        let mut pending = String::with_capacity(BUFFER_CAPACITY);
        let mut chain = Chain::default();
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
                while state.buffer.is_empty() {
                    state.idle = true;
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
                state.idle = false;
                std::mem::swap(&mut state.buffer, &mut pending);
                chained_head = std::mem::take(&mut state.chained_head);
                state.writing = true;
            }
            self.changed.notify_all();
            if self.chained && pending.len() > chained_head {
                chain.seal(&mut pending, chained_head);
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
                if state.failure.take().is_some() {
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

/// The writer's end of the chain.
#[derive(Default)]
struct Chain {
    seq: u64,
    prev: [u8; 32],
}

impl Chain {
    /// Appends to `lines` the chain line over `lines[from..]`.
    fn seal(&mut self, lines: &mut String, from: usize) {
        let covered = &lines[from..];
        let count = covered.bytes().filter(|&b| b == b'\n').count();
        let hash = link_hash(&self.prev, &Sha256::digest(covered.as_bytes()).into());
        self.seq += 1;
        // Writing to a String cannot fail.
        let _ = writeln!(
            lines,
            r#"{{"chain":{},"lines":{count},"prev":"{}","hash":"{}"}}"#,
            self.seq,
            hex(&self.prev),
            hex(&hash)
        );
        self.prev = hash;
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines covered by chain lines.
    pub lines: u64,
    /// Chain lines checked.
    pub chain_lines: u64,
    /// Lines after the last chain line (not yet covered: a write in progress, or cut).
    pub unchained_tail: u64,
}

/// Checks a chained trail given as its lines in order (the files of a rotated trail one
/// after the other). The first chain line's `prev` is taken as given (the trail may start
/// after rotated files were removed); every later one must follow. The error names the
/// first line (1-based, counted over all lines) where the chain breaks.
pub fn verify<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Verified, Broken> {
    let mut prev: Option<[u8; 32]> = None;
    let mut hasher = Sha256::new();
    let mut covered = 0u64;
    let mut first_covered = 1u64;
    let mut result = Verified {
        lines: 0,
        chain_lines: 0,
        unchained_tail: 0,
    };
    for (n, line) in lines.into_iter().enumerate() {
        let number = n as u64 + 1;
        let Some(link) = ChainLine::parse(line) else {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
            covered += 1;
            continue;
        };
        if prev.is_some_and(|p| p != link.prev) {
            return Err(Broken {
                line: number,
                reason: format!(
                    "chain line {} does not follow the one before it (a chain line was \
                     changed or removed, or the files are out of order)",
                    link.seq
                ),
            });
        }
        let lines_hash: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
        if covered != link.lines || link_hash(&link.prev, &lines_hash) != link.hash {
            return Err(Broken {
                line: number,
                reason: format!(
                    "chain line {} does not match lines {first_covered} to {}: a line there \
                     was changed, removed or inserted",
                    link.seq,
                    number - 1
                ),
            });
        }
        result.lines += covered;
        result.chain_lines += 1;
        covered = 0;
        first_covered = number + 1;
        prev = Some(link.hash);
    }
    result.unchained_tail = covered;
    Ok(result)
}

/// Where and why a trail's chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct Broken {
    /// The chain line that does not hold (1-based, over all lines given).
    pub line: u64,
    /// What does not hold.
    pub reason: String,
}

/// A chain line's hash: over the previous one's and the hash of the lines it covers.
fn link_hash(prev: &[u8; 32], lines_hash: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(prev)
        .chain_update(lines_hash)
        .finalize()
        .into()
}

/// A parsed chain line.
struct ChainLine {
    seq: u64,
    lines: u64,
    prev: [u8; 32],
    hash: [u8; 32],
}

impl ChainLine {
    fn parse(line: &str) -> Option<Self> {
        let rest = line.strip_prefix(r#"{"chain":"#)?;
        let (seq, rest) = rest.split_once(r#","lines":"#)?;
        let (lines, rest) = rest.split_once(r#","prev":""#)?;
        let (prev, rest) = rest.split_once(r#"","hash":""#)?;
        let hash = rest.strip_suffix(r#""}"#)?;
        Some(Self {
            seq: seq.parse().ok()?,
            lines: lines.parse().ok()?,
            prev: unhex(prev)?,
            hash: unhex(hash)?,
        })
    }
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Marks the writer stopped when its thread ends, by a panic included.
struct Alive<'a>(&'a Sink);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        tracing::error!("the audit writer stopped; refusing audited requests");
        self.0.lock().alive = false;
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

/// The `[audit]` table of a server's configuration: where its trail goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrailConfig {
    /// Directory of the trail's files (the current one, then `.1`, `.2`, … as it rotates);
    /// unset: no trail of its own.
    pub dir: Option<std::path::PathBuf>,
    /// Size at which the current file is rotated, bytes (default 64 MiB, at least 4 KiB).
    pub max_file_bytes: u64,
    /// Rotated files kept (default 10).
    pub keep_files: usize,
    /// Refuse requests whose audit line cannot be written (default true).
    pub fail_closed: bool,
}

impl Default for TrailConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_file_bytes: 64 << 20,
            keep_files: 10,
            fail_closed: true,
        }
    }
}

impl TrailConfig {
    /// A started, chained trail into `dir/file_name`, or `None` without a `dir`.
    pub fn open(&self, file_name: &str) -> std::io::Result<Option<Arc<Sink>>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let out = RotatingFile::open(
            dir,
            file_name,
            self.max_file_bytes.max(4096),
            self.keep_files,
        )?;
        let sink = Sink::chained(Duration::from_secs(1));
        sink.spawn_writer(out);
        Ok(Some(sink))
    }
}

/// An audit file that rotates by size: `DIR/NAME` is written until the next write would take
/// it past `max_bytes`; then it becomes `NAME.1` (older ones move up one number, and those
/// past `keep` are removed) and a new `NAME` is started. Files are created mode 0600.
/// Written lines reach the kernel at once (so they survive the process) and the disk at
/// the first flush a [`SYNC_EVERY`] after the last `fdatasync`, and at every rotation: a
/// sync per write would cost a busy server more than the rest of its trail.
#[derive(Debug)]
pub struct RotatingFile {
    dir: std::path::PathBuf,
    name: String,
    max_bytes: u64,
    keep: usize,
    file: std::fs::File,
    size: u64,
    synced: Instant,
}

/// How long written audit lines may wait in the page cache before `fdatasync`.
pub const SYNC_EVERY: Duration = Duration::from_secs(1);

impl RotatingFile {
    /// Opens (appending) or creates `dir/name`, creating `dir` (mode 0700) if needed.
    pub fn open(
        dir: &std::path::Path,
        name: &str,
        max_bytes: u64,
        keep: usize,
    ) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let file = Self::open_file(&dir.join(name))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            max_bytes,
            keep,
            file,
            size,
            synced: Instant::now(),
        })
    }

    fn open_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
    }

    fn numbered(&self, n: usize) -> std::path::PathBuf {
        self.dir.join(format!("{}.{n}", self.name))
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.numbered(n), self.numbered(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let current = self.dir.join(&self.name);
        if self.keep == 0 {
            std::fs::remove_file(&current)?;
        } else {
            std::fs::rename(&current, self.numbered(1))?;
        }
        self.file = Self::open_file(&current)?;
        self.size = 0;
        self.synced = Instant::now();
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.synced.elapsed() >= SYNC_EVERY {
            self.file.sync_data()?;
            self.synced = Instant::now();
        }
        Ok(())
    }
}

/// Appends `s` as a JSON string: in quotes, with quotes, backslashes and control characters
/// escaped, so no value can end a field or a line.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_json_escaped(out, s);
    out.push('"');
}

/// Appends `s` escaped for the inside of a JSON string, without the quotes.
pub fn push_json_escaped(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Starts a JSON audit line, `{"time":"<RFC 3339>"`: add fields with
/// [`push_json_field`], then end it with [`end_json_line`].
pub fn start_json_line(out: &mut String, micros: i64) {
    out.push_str("{\"time\":\"");
    push_rfc3339(out, micros);
    out.push('"');
}

/// Appends `,"name":"value"`, the value escaped.
pub fn push_json_field(out: &mut String, name: &str, value: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
    push_json_string(out, value);
}

/// Ends a JSON audit line.
pub fn end_json_line(out: &mut String) {
    out.push_str("}\n");
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Appends `micros` since the epoch as an RFC 3339 UTC time with microseconds,
/// `2026-12-05T10:12:42.123456Z`.
pub fn push_rfc3339(out: &mut String, micros: i64) {
    let (days, rem) = (
        micros.div_euclid(86_400_000_000),
        micros.rem_euclid(86_400_000_000),
    );
    let (year, month, day) = civil_from_days(days);
    // Written field by field: a line is formatted on every audited request, and the
    // formatting machinery cost more than the rest of it.
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
    let mut rest = *b"-00-00T00:00:00.000000Z";
    put(&mut rest[1..3], month.into());
    put(&mut rest[4..6], day.into());
    put(&mut rest[7..9], secs / 3600);
    put(&mut rest[10..12], secs / 60 % 60);
    put(&mut rest[13..15], secs % 60);
    put(&mut rest[16..22], (rem % 1_000_000) as u64);
    push_ascii(out, &rest);
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

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

        out.broken.store(false, SeqCst);
        wait_until(&sink, |s| {
            s.failure.is_none() && s.buffer.is_empty() && !s.writing
        });
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

    /// A chained trail written by `writes` rounds of `per_round` lines, through an output
    /// that fails once in the middle.
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
        let ok = verify(lines.iter().copied()).unwrap();
        assert_eq!(ok.lines, 31);
        assert!(ok.chain_lines >= 7, "{ok:?}");
        assert_eq!(ok.unchained_tail, 0);
        assert!(lines.iter().any(|l| l.contains("user:kept")));

        let at = lines.iter().position(|l| l.contains("user:r3l2")).unwrap();
        let changed: Vec<String> = lines
            .iter()
            .map(|l| l.replace("user:r3l2", "user:r3l9"))
            .collect();
        let e = verify(changed.iter().map(String::as_str))
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
        assert!(verify(removed.iter().copied()).is_err());
        let mut inserted = lines.clone();
        inserted.insert(at, "forged");
        assert!(verify(inserted.iter().copied()).is_err());
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
        let e = verify(cut.iter().copied()).unwrap_err().to_string();
        assert!(e.contains("does not follow"), "{e}");
        // A trail whose start was rotated away still verifies from its first chain line on.
        let tail = verify(lines[first_chain + 1..].iter().copied()).unwrap();
        assert_eq!(tail.chain_lines, ok.chain_lines - 1);
    }

    #[test]
    fn json_strings_escape_what_could_end_a_field_or_a_line() {
        for s in [
            "plain",
            "say \"hi\"",
            "back\\slash",
            "new\nline",
            "nul\0 tab\t",
            "caf\u{e9}",
        ] {
            let mut out = String::new();
            push_json_string(&mut out, s);
            assert!(!out.contains('\n'), "{out}");
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn a_rotating_file_keeps_the_newest_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(dir.path(), "audit.jsonl", 100, 2).unwrap();
        for i in 0..10 {
            f.write_all(format!("{i:039}\n").as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        // Two lines of 40 bytes a file; files .1 and .2 kept, older ones gone.
        assert_eq!(read("audit.jsonl.2"), format!("{:039}\n{:039}\n", 4, 5));
        assert_eq!(read("audit.jsonl.1"), format!("{:039}\n{:039}\n", 6, 7));
        assert_eq!(read("audit.jsonl"), format!("{:039}\n{:039}\n", 8, 9));
        assert!(!dir.path().join("audit.jsonl.3").exists());
        // Reopened, it appends.
        let mut again = RotatingFile::open(dir.path(), "audit.jsonl", 100, 2).unwrap();
        again.write_all(b"x\n").unwrap();
        assert!(read("audit.jsonl").ends_with("x\n"));
    }
}
