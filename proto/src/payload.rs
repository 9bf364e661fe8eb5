//! A payload answer read where it lies in its frame body, so a client can keep the answer's
//! bytes as they came instead of decoding them into an owned string per id and per entry.
//!
//! [`PayloadLayout::parse`] checks a whole `Response<LockboxResponse>` body carrying
//! [`LockboxResponse::Payload`](crate::lockbox::LockboxResponse::Payload) once and records
//! where its parts lie; the parts are then read from the same body through the layout.

use crate::bytes::take_text;
use crate::lockbox::{PAYLOAD, PayloadValue};
use postcard::take_from_bytes;
use std::fmt;
use std::ops::Range;

/// Where the parts of a payload answer lie in its frame body, found by
/// [`parse`](Self::parse), which checked them: the ids and keys are UTF-8, every entry lies
/// whole within the body and nothing follows the last one. Read the parts from the body it
/// was parsed from; given another body, what they read is meaningless, but reading never
/// panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadLayout {
    /// The secret id's bytes.
    secret_id: Range<usize>,
    /// The version id's bytes.
    version_id: Range<usize>,
    /// Where the first entry starts; the entries run to the end of the body.
    entries: usize,
    /// How many entries there are.
    count: usize,
}

impl PayloadLayout {
    /// The request id and the layout, when `body` is a whole `Response<LockboxResponse>`
    /// frame body with a well-formed `Payload` answer. Anything else (an error answer,
    /// another response, a value kind this version does not know, a malformed frame) gives
    /// `None`: decode that in full.
    pub fn parse(body: &[u8]) -> Option<(u64, Self)> {
        let (id, rest) = take_from_bytes::<u64>(body).ok()?;
        // `Ok` is variant 0 of the result: a single zero byte.
        let rest = rest.strip_prefix(&[0])?;
        let (variant, rest) = take_from_bytes::<u32>(rest).ok()?;
        if variant != PAYLOAD.get() {
            return None;
        }
        let offset = |rest: &[u8]| body.len() - rest.len();
        let (secret_id, rest) = take_text(rest)?;
        let secret_id = offset(rest) - secret_id.len()..offset(rest);
        let (version_id, rest) = take_text(rest)?;
        let version_id = offset(rest) - version_id.len()..offset(rest);
        let (count, rest) = take_from_bytes::<u64>(rest).ok()?;
        let count = usize::try_from(count).ok()?;
        let entries = offset(rest);
        let mut left = rest;
        // Each entry takes at least three bytes, so a count no body could hold stops at the
        // first entry missing.
        for _ in 0..count {
            left = read_raw_entry(left)?.2;
        }
        if !left.is_empty() {
            return None;
        }
        Some((
            id,
            Self {
                secret_id,
                version_id,
                entries,
                count,
            },
        ))
    }

    /// The secret id.
    pub fn secret_id<'a>(&self, body: &'a [u8]) -> &'a str {
        text(body, &self.secret_id)
    }

    /// The version id.
    pub fn version_id<'a>(&self, body: &'a [u8]) -> &'a str {
        text(body, &self.version_id)
    }

    /// How many entries the payload has.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the payload has no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The value of the entry `key`, if there is one.
    pub fn get<'a>(&self, body: &'a [u8], key: &str) -> Option<PayloadValueRef<'a>> {
        let mut rest = body.get(self.entries..)?;
        for _ in 0..self.count {
            let (k, value, next) = read_raw_entry(rest)?;
            if k == key.as_bytes() {
                return Some(value);
            }
            rest = next;
        }
        None
    }

    /// The entries, in the order the daemon sent them.
    pub fn entries<'a>(&self, body: &'a [u8]) -> PayloadEntries<'a> {
        PayloadEntries {
            rest: body.get(self.entries..).unwrap_or_default(),
            left: self.count,
        }
    }
}

/// The checked bytes at `range` as text; empty only when given a body the layout was not
/// parsed from.
fn text<'a>(body: &'a [u8], range: &Range<usize>) -> &'a str {
    body.get(range.clone())
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .unwrap_or_default()
}

/// One entry at the start of `bytes`, its key as bytes, and what follows it.
fn read_raw_entry(bytes: &[u8]) -> Option<(&[u8], PayloadValueRef<'_>, &[u8])> {
    let (key, rest) = take_text(bytes)?;
    let (kind, rest) = take_from_bytes::<u32>(rest).ok()?;
    let (value, rest) = take_from_bytes::<&[u8]>(rest).ok()?;
    let value = if kind == PayloadValue::text_tag() {
        PayloadValueRef::Text(value)
    } else if kind == PayloadValue::binary_tag() {
        PayloadValueRef::Binary(value)
    } else {
        return None;
    };
    Some((key, value, rest))
}

/// The entries of a payload answer, read in place.
#[derive(Clone)]
pub struct PayloadEntries<'a> {
    /// The entries not yet read, then nothing.
    rest: &'a [u8],
    /// How many entries `rest` holds.
    left: usize,
}

impl<'a> Iterator for PayloadEntries<'a> {
    type Item = PayloadEntryRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // The layout checked every entry, so this ends early only on a body it was not
        // parsed from.
        let (key, value, rest) = read_raw_entry(self.rest)?;
        self.rest = rest;
        self.left -= 1;
        let key = std::str::from_utf8(key).ok()?;
        Some(PayloadEntryRef { key, value })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

impl fmt::Debug for PayloadEntries<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// One entry of a payload, borrowed from the answer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadEntryRef<'a> {
    /// Key.
    pub key: &'a str,
    /// Value.
    pub value: PayloadValueRef<'a>,
}

/// A payload value, borrowed from the answer's bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadValueRef<'a> {
    /// UTF-8 text.
    Text(&'a [u8]),
    /// Bytes.
    Binary(&'a [u8]),
}

impl<'a> PayloadValueRef<'a> {
    /// The value's bytes, whatever its kind.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            Self::Text(b) | Self::Binary(b) => b,
        }
    }
}

impl fmt::Debug for PayloadValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Self::Text(_) => "Text",
            Self::Binary(_) => "Binary",
        };
        write!(f, "{kind}([REDACTED; {}])", self.bytes().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode};
    use crate::lockbox::{LockboxResponse, PayloadEntry, PayloadValue};
    use crate::message::Response;

    const SECRET: &str = "e6q00000000000000000";
    const VERSION: &str = "e6q0000000000000000v";

    fn answer(id: u64, entries: Vec<PayloadEntry>) -> Vec<u8> {
        postcard::to_allocvec(&Response {
            id,
            result: Ok::<_, Error>(LockboxResponse::Payload {
                secret_id: SECRET.into(),
                version_id: VERSION.into(),
                entries,
            }),
        })
        .unwrap()
    }

    fn text(key: &str, value: &[u8]) -> PayloadEntry {
        PayloadEntry {
            key: key.into(),
            value: PayloadValue::Text(value.to_vec().into()),
        }
    }

    fn binary(key: &str, value: &[u8]) -> PayloadEntry {
        PayloadEntry {
            key: key.into(),
            value: PayloadValue::Binary(value.to_vec().into()),
        }
    }

    /// The entries as owned values, to compare with what was encoded.
    fn owned(layout: &PayloadLayout, body: &[u8]) -> Vec<PayloadEntry> {
        layout
            .entries(body)
            .map(|e| match e.value {
                PayloadValueRef::Text(v) => text(e.key, v),
                PayloadValueRef::Binary(v) => binary(e.key, v),
            })
            .collect()
    }

    #[test]
    fn reads_what_the_derived_payload_encodes() {
        let long = vec![0xa5; 70_000];
        let cases = [
            vec![],
            vec![text("user", b"alice")],
            vec![
                text("", b""),
                binary("b", &[]),
                binary("blob", &[0, 1, 255]),
            ],
            vec![text("user", b"alice"), binary("big", &long)],
            vec![text("ключ", "значение".as_bytes())],
        ];
        for entries in cases {
            for id in [1, 300, u64::MAX] {
                let body = answer(id, entries.clone());
                let (read_id, layout) = PayloadLayout::parse(&body).expect("a payload answer");
                assert_eq!(read_id, id);
                assert_eq!(layout.secret_id(&body), SECRET);
                assert_eq!(layout.version_id(&body), VERSION);
                assert_eq!(layout.len(), entries.len());
                assert_eq!(layout.is_empty(), entries.is_empty());
                assert_eq!(owned(&layout, &body), entries);
                for (e, read) in entries.iter().zip(layout.entries(&body)) {
                    let found = layout.get(&body, &e.key).map(|v| v.bytes());
                    assert_eq!(found, Some(read.value.bytes()), "{}", e.key);
                }
                assert_eq!(layout.get(&body, "missing"), None);
            }
        }
    }

    #[test]
    fn refuses_every_truncation_and_trailing_bytes() {
        let whole = answer(7, vec![text("user", b"alice"), binary("k", &[1, 2])]);
        assert!(PayloadLayout::parse(&whole).is_some());
        for cut in 0..whole.len() {
            assert_eq!(PayloadLayout::parse(&whole[..cut]), None, "cut at {cut}");
        }
        let mut trailing = whole.clone();
        trailing.push(0);
        assert_eq!(PayloadLayout::parse(&trailing), None);
    }

    #[test]
    fn refuses_what_the_derived_decoder_would_refuse() {
        let whole = answer(7, vec![text("user", b"alice")]);
        // The key's bytes: not UTF-8.
        let at = whole.windows(4).position(|w| w == b"user").unwrap();
        let mut bad_key = whole.clone();
        bad_key[at] = 0xff;
        assert_eq!(PayloadLayout::parse(&bad_key), None);
        // The value's kind: a variant past `Binary`.
        let mut bad_kind = whole.clone();
        bad_kind[at + 4] = 2;
        assert_eq!(PayloadLayout::parse(&bad_kind), None);
        // A count of entries no body could hold.
        let mut count = answer(7, vec![]);
        *count.last_mut().unwrap() = 0x7f;
        assert_eq!(PayloadLayout::parse(&count), None);
    }

    #[test]
    fn leaves_other_answers_to_the_full_decoder() {
        let failed = postcard::to_allocvec(&Response::<LockboxResponse> {
            id: 7,
            result: Err(Error::new(ErrorCode::NotFound, "no such secret")),
        })
        .unwrap();
        assert_eq!(PayloadLayout::parse(&failed), None);
        let other = postcard::to_allocvec(&Response::<LockboxResponse> {
            id: 7,
            result: Ok(LockboxResponse::ClockAdvanced { now: 5 }),
        })
        .unwrap();
        assert_eq!(PayloadLayout::parse(&other), None);
    }

    #[test]
    fn another_body_reads_as_nothing_rather_than_panicking() {
        let body = answer(7, vec![text("user", b"alice")]);
        let (_, layout) = PayloadLayout::parse(&body).unwrap();
        assert_eq!(layout.secret_id(&[]), "");
        assert_eq!(layout.entries(&[]).count(), 0);
        assert_eq!(layout.entries(&body[..body.len() - 1]).count(), 0);
        assert_eq!(layout.get(&[], "user"), None);
    }

    #[test]
    fn values_do_not_show_in_debug_output() {
        let body = answer(7, vec![text("user", b"hunter2")]);
        let (_, layout) = PayloadLayout::parse(&body).unwrap();
        let shown = format!("{:?}", layout.entries(&body));
        assert!(
            shown.contains("user") && shown.contains("REDACTED"),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
