//! The hash chain over a trail's lines: sealed by the writer, checked by [`verify`].

use lockbox_proto::bytes::hex;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// A chain's head: the last chain line, by its number and hash (all zeros before the first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain line's `chain` number.
    pub seq: u64,
    /// Its `hash`.
    pub hash: [u8; 32],
}

impl ChainHead {
    /// Appends to `lines` the chain line over `lines[from..]`, which becomes the head;
    /// returns how many lines it covers.
    pub(super) fn seal(&mut self, lines: &mut String, from: usize) -> u64 {
        let (line, count) = self.line_over(&lines.as_bytes()[from..]);
        lines.push_str(&line);
        count
    }

    /// The chain line over `covered` (whole lines), which becomes the head, and how many
    /// lines it covers.
    fn line_over(&mut self, covered: &[u8]) -> (String, u64) {
        let count = covered.iter().filter(|&&b| b == b'\n').count() as u64;
        let hash = link_hash(&self.hash, &Sha256::digest(covered).into());
        let line = format!(
            "{{\"chain\":{},\"lines\":{count},\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
            self.seq + 1,
            hex(&self.hash),
            hex(&hash)
        );
        *self = Self {
            seq: self.seq + 1,
            hash,
        };
        (line, count)
    }

    /// What a signature over this head, made at `time` (RFC 3339), signs.
    pub fn signed_message(&self, time: &str) -> String {
        format!(
            "lockbox audit trail chain head\nchain {}\nhash {}\ntime {time}\n",
            self.seq,
            hex(&self.hash)
        )
    }
}

/// Where a trail's files leave its chain, for a writer starting again: the head is the last
/// chain line of `current` (or, when it has none, of the newest rotated file, read by
/// `previous` only then). Lines after that chain line (a write cut short by a crash) are
/// covered by a chain line of their own, returned, with a newline ending a cut line first,
/// to be appended to `current` before anything else.
pub(super) fn resume(
    current: &[u8],
    previous: impl FnOnce() -> std::io::Result<Option<Vec<u8>>>,
) -> std::io::Result<(ChainHead, Vec<u8>)> {
    let (mut head, after) = match last_head(current) {
        Some(found) => found,
        None => {
            let head = previous()?
                .as_deref()
                .and_then(last_head)
                .map(|(head, _)| head);
            (head.unwrap_or_default(), 0)
        }
    };
    let tail = &current[after..];
    let tail = tail.strip_prefix(b"\n").unwrap_or(tail);
    let mut append = Vec::new();
    if !current.is_empty() && !current.ends_with(b"\n") {
        append.push(b'\n');
    }
    if !tail.is_empty() {
        let mut covered = tail.to_vec();
        covered.extend_from_slice(&append);
        append.extend_from_slice(head.line_over(&covered).0.as_bytes());
    }
    Ok((head, append))
}

/// The last chain line in `text` and the offset just past it (before its newline).
fn last_head(text: &[u8]) -> Option<(ChainHead, usize)> {
    let mut found = None;
    let mut offset = 0;
    for line in text.split(|&b| b == b'\n') {
        let end = offset + line.len();
        if let Some(link) = std::str::from_utf8(line).ok().and_then(ChainLine::parse) {
            found = Some((
                ChainHead {
                    seq: link.seq,
                    hash: link.hash,
                },
                end,
            ));
        }
        offset = end + 1;
    }
    found
}

/// Appends the line recording `signature`, by `key_id`, over `head` at `time`:
/// `{"signed":SEQ,"hash":"HEX","time":"T","key":"K","signature":"HEX"}`.
pub(super) fn push_signature_line(
    out: &mut String,
    head: &ChainHead,
    time: &str,
    key_id: &str,
    signature: &[u8],
) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"{{"signed":{},"hash":"{}","time":"{time}","key":""#,
        head.seq,
        hex(&head.hash)
    );
    super::push_json_escaped(out, key_id);
    let _ = writeln!(out, r#"","signature":"{}"}}"#, hex(signature));
}

/// A parsed signature line.
struct SignatureLine<'a> {
    head: ChainHead,
    time: &'a str,
    key_id: &'a str,
    signature: Vec<u8>,
}

impl<'a> SignatureLine<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let rest = line.strip_prefix(r#"{"signed":"#)?;
        let (seq, rest) = rest.split_once(r#","hash":""#)?;
        let (hash, rest) = rest.split_once(r#"","time":""#)?;
        let (time, rest) = rest.split_once(r#"","key":""#)?;
        let (key_id, rest) = rest.split_once(r#"","signature":""#)?;
        let signature = rest.strip_suffix(r#""}"#)?;
        Some(Self {
            head: ChainHead {
                seq: seq.parse().ok()?,
                hash: unhex(hash)?.try_into().ok()?,
            },
            time,
            key_id,
            signature: unhex(signature)?,
        })
    }
}

/// The keys whose signatures are among `lines`, to fetch before [`verify`] checks them.
pub fn signature_keys<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> std::collections::BTreeSet<&'a str> {
    lines
        .into_iter()
        .filter_map(SignatureLine::parse)
        .map(|s| s.key_id)
        .collect()
}

/// A signature [`verify`] found, for its caller to check.
#[derive(Debug)]
pub struct SignedHead<'a> {
    /// The key of lockbox-kms that made it.
    pub key_id: &'a str,
    /// What it signs.
    pub message: String,
    /// The signature (DER).
    pub signature: &'a [u8],
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
    /// Signatures checked.
    pub signatures: u64,
    /// Signatures over chain lines not among those given (their files were removed).
    pub signatures_elsewhere: u64,
    /// The line (1-based, over all lines given) of the last chain line a good signature
    /// covers: it and every line before it are as they were when it was signed.
    pub signed_through: Option<u64>,
    /// Lines other than chain and signature lines after `signed_through` (all of them when
    /// nothing is signed): what a signature does not vouch for yet.
    pub unsigned_lines: u64,
}

/// How many recent chain lines [`verify`] remembers for the signatures that follow them.
const SIGNABLE_HEADS: usize = 1 << 16;

/// Checks a chained trail given as its lines in order (the files of a rotated trail one
/// after the other). The first chain line's `prev` is taken as given (the trail may start
/// after rotated files were removed); every later one must follow. Each signature line must
/// name a chain line before it as that line is, and `check` must accept its signature (the
/// caller holds the public keys). The error names the first line (1-based, counted over all
/// lines) where the trail breaks.
pub fn verify<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    mut check: impl FnMut(&SignedHead<'_>) -> Result<(), String>,
) -> Result<Verified, Broken> {
    let mut prev: Option<[u8; 32]> = None;
    let mut hasher = Sha256::new();
    let mut covered = 0u64;
    let mut first_covered = 1u64;
    // Lines that are neither chain nor signature lines, so far.
    let mut events = 0u64;
    let mut signed_events = 0u64;
    // Recent chain lines: head, line number, events up to it.
    let mut heads: std::collections::VecDeque<(ChainHead, u64, u64)> =
        std::collections::VecDeque::new();
    let mut result = Verified {
        lines: 0,
        chain_lines: 0,
        unchained_tail: 0,
        signatures: 0,
        signatures_elsewhere: 0,
        signed_through: None,
        unsigned_lines: 0,
    };
    for (n, line) in lines.into_iter().enumerate() {
        let number = n as u64 + 1;
        let broken = |reason: String| Broken {
            line: number,
            reason,
        };
        let Some(link) = ChainLine::parse(line) else {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
            covered += 1;
            let Some(signed) = SignatureLine::parse(line) else {
                events += 1;
                continue;
            };
            let seq = signed.head.seq;
            let Some(&(head, at, through)) = heads.iter().find(|(h, ..)| h.seq == seq) else {
                if heads.back().is_some_and(|(h, ..)| h.seq < seq) {
                    return Err(broken(format!(
                        "a signature names chain line {seq}, which does not come before it"
                    )));
                }
                result.signatures_elsewhere += 1;
                continue;
            };
            if head != signed.head {
                return Err(broken(format!(
                    "a signature is over another chain line {seq} than the one at line {at}: \
                     the trail up to it was rewritten"
                )));
            }
            check(&SignedHead {
                key_id: signed.key_id,
                message: head.signed_message(signed.time),
                signature: &signed.signature,
            })
            .map_err(|e| {
                broken(format!(
                    "the signature of chain line {seq} by key {} does not hold: {e}",
                    signed.key_id
                ))
            })?;
            result.signatures += 1;
            if result.signed_through.is_none_or(|t| t < at) {
                result.signed_through = Some(at);
                signed_events = through;
            }
            continue;
        };
        if prev.is_some_and(|p| p != link.prev) {
            return Err(broken(format!(
                "chain line {} does not follow the one before it (a chain line was changed \
                 or removed, or the files are out of order)",
                link.seq
            )));
        }
        let lines_hash: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
        if covered != link.lines || link_hash(&link.prev, &lines_hash) != link.hash {
            return Err(broken(format!(
                "chain line {} does not match lines {first_covered} to {}: a line there was \
                 changed, removed or inserted",
                link.seq,
                number - 1
            )));
        }
        result.lines += covered;
        result.chain_lines += 1;
        covered = 0;
        first_covered = number + 1;
        prev = Some(link.hash);
        if heads.len() == SIGNABLE_HEADS {
            heads.pop_front();
        }
        heads.push_back((
            ChainHead {
                seq: link.seq,
                hash: link.hash,
            },
            number,
            events,
        ));
    }
    result.unchained_tail = covered;
    result.unsigned_lines = events - signed_events;
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
            prev: unhex(prev)?.try_into().ok()?,
            hash: unhex(hash)?.try_into().ok()?,
        })
    }
}

/// Lowercase or uppercase hex as bytes.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
