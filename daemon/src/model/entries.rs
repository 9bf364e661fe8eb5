//! A version's entries, and the layout they are stored in inside its ciphertext.
//!
//! The layout is the daemon's own, numbered ([`EntriesLayout`]) and written by hand: no wire
//! protocol and no serde encoding defines what is on disk, so changing a message of the
//! socket protocol can never become a storage migration. A front-end that sends payloads
//! rewrites the stored layout into its own encoding (the socket server does so in place).
//!
//! Layout 0, the only one so far, and the layout of every payload written before layouts
//! were numbered:
//!
//! ```text
//! entries := count entry*
//! entry   := key-length key kind value-length value
//! kind    := 0x01 (text, UTF-8) | 0x00 (binary)
//! count, key-length, value-length: unsigned LEB128 (7 bits a byte, low group first)
//! ```
//!
//! Nothing follows the last entry. Tests hold it against frozen byte vectors.

use crate::error::LockboxError;
use lockbox_proto::Wiping;
use std::ops::Range;

/// How a payload's plaintext lays out its entries. Stored with every sealed payload, beside
/// the ciphertext rather than inside it; the order of the variants is part of the stored
/// format (a new layout goes last, and should bind its number into the payload's associated
/// data, so that a record naming the wrong layout fails to decrypt rather than misreads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntriesLayout {
    /// The layout described in the module documentation.
    V0,
}

impl EntriesLayout {
    /// The layout new versions are written in.
    pub const CURRENT: Self = Self::V0;
}

/// One payload entry in plaintext. Zeroized on drop; its `Debug` shows only the key.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Entry {
    /// At most 256 of `[-_./\\@0-9a-zA-Z]` (checked when a version is added).
    pub key: String,
    /// Whether the value is text (UTF-8) rather than bytes.
    pub text: bool,
    /// The value's bytes.
    pub value: Vec<u8>,
}

impl Entry {
    /// An entry of `key`, a text value (`text`) or a binary one, and `value`'s bytes.
    pub fn new(key: &str, text: bool, value: &[u8]) -> Self {
        Self {
            key: key.to_owned(),
            text,
            value: value.to_vec(),
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", &format_args!("[REDACTED; {}]", self.value.len()))
            .finish()
    }
}

/// Whether a value is text or bytes, as the stored layout marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// UTF-8 text.
    Text,
    /// Bytes.
    Binary,
}

/// Where one entry lies in a plaintext of [`EntriesLayout::V0`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySpan {
    /// The key's bytes.
    pub key: Range<usize>,
    /// The kind of the value.
    pub kind: ValueKind,
    /// Where the byte that marks the kind is.
    pub kind_at: usize,
    /// The value's bytes.
    pub value: Range<usize>,
}

const TEXT: u8 = 1;
const BINARY: u8 = 0;

fn unreadable() -> LockboxError {
    LockboxError::Internal("stored payload is unreadable".into())
}

/// Bytes `n` takes as LEB128.
fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        // The low seven bits, with the continuation bit set.
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 length at `*at` and moves past it; `None` if it is truncated or does not
/// fit in a `usize`.
fn take_varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut value: usize = 0;
    for shift in (0..usize::BITS).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let group = usize::from(byte & 0x7f);
        if shift > 0 && group.leading_zeros() < shift {
            return None;
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Lays `entries` out in the [`CURRENT`](EntriesLayout::CURRENT) layout, in a buffer sized
/// exactly up front (a growing vector would leave copies of the plaintext behind).
pub fn encode(entries: &[Entry]) -> Wiping {
    let len = varint_len(entries.len())
        + entries
            .iter()
            .map(|e| {
                varint_len(e.key.len())
                    + e.key.len()
                    + 1
                    + varint_len(e.value.len())
                    + e.value.len()
            })
            .sum::<usize>();
    let mut out = Wiping::new(Vec::with_capacity(len));
    put_varint(&mut out, entries.len());
    for e in entries {
        put_varint(&mut out, e.key.len());
        out.extend_from_slice(e.key.as_bytes());
        out.push(if e.text { TEXT } else { BINARY });
        put_varint(&mut out, e.value.len());
        out.extend_from_slice(&e.value);
    }
    debug_assert_eq!(out.len(), len, "the encoding outgrew its size");
    out
}

/// The entries of a plaintext in `layout`, as owned values (to build a new version over).
pub fn decode(layout: EntriesLayout, bytes: &[u8]) -> Result<Vec<Entry>, LockboxError> {
    match layout {
        EntriesLayout::V0 => {
            let mut cursor = Cursor::new(bytes)?;
            // A count no plaintext could hold stops at the first entry missing.
            let mut entries = Vec::with_capacity(cursor.left.min(bytes.len() / 3));
            while let Some(span) = cursor.next(bytes)? {
                let key = std::str::from_utf8(&bytes[span.key])
                    .map_err(|_| unreadable())?
                    .to_owned();
                entries.push(Entry {
                    key,
                    text: span.kind == ValueKind::Text,
                    value: bytes[span.value].to_vec(),
                });
            }
            Ok(entries)
        }
    }
}

/// Rewrites in place the byte that gives each value's kind in a plaintext of
/// [`EntriesLayout::V0`]: to `text` for a text value, to `binary` for a binary one; checks the
/// layout as it goes, so on an error part of it may have been rewritten. For a front-end whose
/// encoding differs from this layout only there; one pass, nothing returned per entry.
pub fn rewrite_kinds(bytes: &mut [u8], text: u8, binary: u8) -> Result<(), LockboxError> {
    rewrite(bytes, text, binary).ok_or_else(unreadable)
}

fn rewrite(bytes: &mut [u8], text: u8, binary: u8) -> Option<()> {
    let mut at = 0;
    let count = take_varint(bytes, &mut at)?;
    for _ in 0..count {
        let key_len = take_varint(bytes, &mut at)?;
        at = at.checked_add(key_len)?;
        let kind = bytes.get_mut(at)?;
        *kind = match *kind {
            TEXT => text,
            BINARY => binary,
            _ => return None,
        };
        at += 1;
        let value_len = take_varint(bytes, &mut at)?;
        at = at.checked_add(value_len)?;
    }
    (at == bytes.len()).then_some(())
}

/// Walks the entries of a plaintext of [`EntriesLayout::V0`], one [`EntrySpan`] at a time: for
/// decoding, and for a front-end that builds its own answer from the parts (one whose
/// encoding differs from the layout only in the kind bytes uses [`rewrite_kinds`]). It holds
/// positions, not the bytes.
#[derive(Debug)]
pub struct Cursor {
    /// Where the next entry starts.
    at: usize,
    /// Entries not yet read.
    left: usize,
}

impl Cursor {
    /// A cursor at the first entry of `bytes`.
    pub fn new(bytes: &[u8]) -> Result<Self, LockboxError> {
        let mut at = 0;
        let left = take_varint(bytes, &mut at).ok_or_else(unreadable)?;
        Ok(Self { at, left })
    }

    /// The next entry, or `None` after the last, when nothing may follow it. `bytes` must be
    /// the plaintext the cursor was made for (the kind bytes may have been rewritten).
    pub fn next(&mut self, bytes: &[u8]) -> Result<Option<EntrySpan>, LockboxError> {
        if self.left == 0 {
            return if self.at == bytes.len() {
                Ok(None)
            } else {
                Err(unreadable())
            };
        }
        let span = self.read(bytes).ok_or_else(unreadable)?;
        self.left -= 1;
        Ok(Some(span))
    }

    fn read(&mut self, bytes: &[u8]) -> Option<EntrySpan> {
        let mut at = self.at;
        let key_len = take_varint(bytes, &mut at)?;
        let key = at..at.checked_add(key_len)?;
        at = key.end;
        let kind_at = at;
        let kind = match *bytes.get(kind_at)? {
            TEXT => ValueKind::Text,
            BINARY => ValueKind::Binary,
            _ => return None,
        };
        at += 1;
        let value_len = take_varint(bytes, &mut at)?;
        let value = at..at.checked_add(value_len)?;
        if value.end > bytes.len() {
            return None;
        }
        self.at = value.end;
        Some(EntrySpan {
            key,
            kind,
            kind_at,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Layout 0 by hand, byte for byte.
    #[test]
    fn layout_zero_is_frozen() {
        let cases: [(Vec<Entry>, Vec<u8>); 3] = [
            (vec![], vec![0x00]),
            (
                vec![
                    Entry::new("user", true, b"alice"),
                    Entry::new("b", false, &[0, 255]),
                ],
                [
                    &[0x02, 0x04][..],
                    b"user",
                    &[0x01, 0x05],
                    b"alice",
                    &[0x01, b'b', 0x00, 0x02, 0x00, 0xff],
                ]
                .concat(),
            ),
            (
                vec![Entry::new("k", true, &[b'v'; 200])],
                [&[0x01, 0x01, b'k', 0x01, 0xc8, 0x01][..], &[b'v'; 200]].concat(),
            ),
        ];
        for (entries, bytes) in cases {
            assert_eq!(encode(&entries).as_slice(), bytes.as_slice());
            assert_eq!(decode(EntriesLayout::V0, &bytes).unwrap(), entries);
        }
    }

    /// What postcard made of the daemon's entries before the layout had a name: the form of
    /// every payload written by lockboxd 0.1 with schema 1.
    #[derive(serde::Serialize)]
    struct SchemaOneEntry<'a> {
        key: &'a str,
        text: bool,
        #[serde(with = "lockbox_proto::bytes::vec")]
        value: Vec<u8>,
    }

    fn many() -> Vec<Entry> {
        let long_key = "k".repeat(130);
        (0..200)
            .map(|i| Entry::new(&format!("{long_key}{i}"), i % 3 == 0, &vec![i as u8; i * 7]))
            .collect()
    }

    #[test]
    fn layout_zero_is_what_schema_one_wrote() {
        let cases = [
            vec![],
            vec![
                Entry::new("empty", true, b""),
                Entry::new("none", false, b""),
            ],
            vec![Entry::new("note", true, "zürich ✓".as_bytes())],
            vec![Entry::new(&"k".repeat(200), true, &[b'v'; 70_000])],
            many(),
        ];
        for entries in cases {
            let schema_one: Vec<SchemaOneEntry<'_>> = entries
                .iter()
                .map(|e| SchemaOneEntry {
                    key: &e.key,
                    text: e.text,
                    value: e.value.clone(),
                })
                .collect();
            let written = postcard::to_allocvec(&schema_one).unwrap();
            assert_eq!(encode(&entries).as_slice(), written.as_slice());
            assert_eq!(decode(EntriesLayout::V0, &written).unwrap(), entries);
        }
    }

    #[test]
    fn the_cursor_finds_every_part() {
        let entries = many();
        let bytes = encode(&entries);
        let mut cursor = Cursor::new(&bytes).unwrap();
        for e in &entries {
            let span = cursor.next(&bytes).unwrap().unwrap();
            assert_eq!(&bytes[span.key], e.key.as_bytes());
            assert_eq!(&bytes[span.value], e.value.as_slice());
            assert_eq!(span.kind == ValueKind::Text, e.text);
            assert_eq!(bytes[span.kind_at], u8::from(e.text));
        }
        assert_eq!(cursor.next(&bytes).unwrap(), None);
    }

    #[test]
    fn kinds_are_rewritten_in_place_where_the_cursor_finds_them() {
        let entries = many();
        let mut bytes = encode(&entries).to_vec();
        rewrite_kinds(&mut bytes, 7, 9).unwrap();
        let original = encode(&entries);
        let mut cursor = Cursor::new(&original).unwrap();
        let mut expected = original.to_vec();
        while let Some(span) = cursor.next(&original).unwrap() {
            expected[span.kind_at] = if span.kind == ValueKind::Text { 7 } else { 9 };
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn unreadable_plaintexts_are_refused() {
        let bytes = encode(&[
            Entry::new("user", true, b"alice"),
            Entry::new("blob", false, &[7; 3]),
        ]);
        let refused = |bytes: &[u8]| {
            let walked = Cursor::new(bytes).and_then(|mut c| {
                while c.next(bytes)?.is_some() {}
                Ok(())
            });
            let unreadable = Err(unreadable());
            walked == unreadable
                && decode(EntriesLayout::V0, bytes).map(|_| ()) == unreadable
                && rewrite_kinds(&mut bytes.to_vec(), 1, 0) == unreadable
        };
        for cut in 0..bytes.len() {
            assert!(refused(&bytes[..cut]), "cut at {cut}");
        }
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(refused(&trailing));
        let mut not_a_kind = bytes.to_vec();
        // count, key length, "user", then the kind.
        not_a_kind[1 + 1 + 4] = 2;
        assert!(refused(&not_a_kind));
        let mut not_utf8 = bytes.to_vec();
        not_utf8[2] = 0xff;
        assert!(decode(EntriesLayout::V0, &not_utf8).is_err());
        // A count no plaintext could hold, and a length past usize.
        assert!(refused(&[0xff, 0xff, 0xff, 0x7f]));
        assert!(refused(&[
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
        ]));
        assert!(!refused(&bytes));
    }

    #[test]
    fn debug_output_hides_values() {
        let shown = format!("{:?}", Entry::new("user", true, b"alice"));
        assert!(
            shown.contains("user") && !shown.contains("alice"),
            "{shown}"
        );
    }
}
