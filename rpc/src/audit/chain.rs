//! The hash chain over a trail's lines: sealed by the writer, checked by [`verify`].

use lockbox_proto::bytes::hex;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// The writer's end of the chain.
#[derive(Default)]
pub(super) struct Chain {
    seq: u64,
    prev: [u8; 32],
}

impl Chain {
    /// Appends to `lines` the chain line over `lines[from..]`.
    pub(super) fn seal(&mut self, lines: &mut String, from: usize) {
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
