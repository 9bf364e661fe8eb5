//! Payload answers: the service decrypts a version's entries straight into the answer being
//! written, in their stored layout, and this front-end rewrites them there, in place, into
//! the encoding the socket protocol gives a `Vec<PayloadEntry>`. No other copy of the
//! plaintext is made and no id or entry is copied into an owned value.

use crate::error::LockboxError;
use crate::model::entries::{self, EntriesLayout};
use crate::service::{Caller, Lockbox, PayloadRead};
use lockbox_proto::lockbox::{PayloadHead, PayloadValue, SecretRef};
use lockbox_rpc::server::{AnswerError, respond, respond_with};
use std::sync::LazyLock;
use zeroize::Zeroize;

/// Answers a payload read: the answer's head, then the entries decrypted into it.
pub(super) fn respond_payload(
    out: &mut Vec<u8>,
    id: u64,
    read: Result<PayloadRead, LockboxError>,
    max_frame: u32,
) {
    let written = read.and_then(|read| {
        let head = PayloadHead {
            secret_id: read.secret_id(),
            version_id: read.version_id(),
        };
        respond_with(
            out,
            id,
            max_frame,
            |body| head.append_response(id, body),
            |body| write_entries(&read, body),
        )
    });
    if let Err(e) = written {
        respond::<()>(out, id, Err(e.answer()), max_frame);
    }
}

/// `GetPayloadEx`: the secret named by id, or by folder and name.
pub(super) async fn get_payload_ex(
    lockbox: &Lockbox,
    caller: &Caller,
    secret: SecretRef,
    version_id: Option<String>,
) -> Result<PayloadRead, LockboxError> {
    let version_id = version_id.as_deref();
    match secret {
        SecretRef::Id(id) => lockbox.get_payload(caller, &id, version_id).await,
        SecretRef::FolderAndName { folder_id, name } => {
            lockbox
                .get_payload_by_name(caller, &folder_id, &name, version_id)
                .await
        }
        _ => Err(LockboxError::InvalidArgument(
            "secret: unknown reference kind".into(),
        )),
    }
}

/// Appends the entries of `read` to `out` as the protocol encodes a `Vec<PayloadEntry>`. On
/// failure `out` is left as it was, the plaintext it was given wiped.
pub fn write_entries(read: &PayloadRead, out: &mut Vec<u8>) -> Result<(), LockboxError> {
    let start = out.len();
    let layout = read.decrypt_into(out)?;
    entries_to_wire(layout, &mut out[start..]).inspect_err(|_| {
        out[start..].zeroize();
        out.truncate(start);
    })
}

/// The protocol's tags of a value's kind, as the one byte each takes (both are below 128, so
/// each is a one-byte varint; `None` were that ever not so).
static VALUE_TAGS: LazyLock<Option<[u8; 2]>> = LazyLock::new(|| {
    let one_byte = |tag: u32| u8::try_from(tag).ok().filter(|t| *t < 0x80);
    Some([
        one_byte(PayloadValue::text_tag())?,
        one_byte(PayloadValue::binary_tag())?,
    ])
});

/// Rewrites entries in `layout`, in place, into the protocol's encoding of a
/// `Vec<PayloadEntry>`.
///
/// Layout 0 and the protocol's encoding agree on everything but the byte that gives a value's
/// kind: both write the count, and each key and value as a LEB128 length and its bytes,
/// which is how postcard writes a vector, a `String` and `SecretBytes`. So only that byte
/// changes, to `PayloadValue`'s tag. Tests hold the result against the derived encoding.
pub fn entries_to_wire(layout: EntriesLayout, bytes: &mut [u8]) -> Result<(), LockboxError> {
    match layout {
        EntriesLayout::V0 => {
            let [text, binary] = (*VALUE_TAGS).ok_or_else(|| {
                LockboxError::Internal("payload value tags are not one byte".into())
            })?;
            entries::rewrite_kinds(bytes, text, binary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::entries::{Entry, encode};
    use lockbox_proto::lockbox::PayloadEntry;

    /// `entries` as stored, rewritten for the wire, and as the protocol's derived form
    /// encodes them.
    fn both_ways(entries: &[Entry]) -> (Vec<u8>, Vec<u8>) {
        let mut stored = encode(entries).to_vec();
        entries_to_wire(EntriesLayout::V0, &mut stored).unwrap();
        let sent: Vec<PayloadEntry> = entries
            .iter()
            .map(|e| PayloadEntry {
                key: e.key.clone(),
                value: if e.text {
                    PayloadValue::Text(e.value.clone().into())
                } else {
                    PayloadValue::Binary(e.value.clone().into())
                },
            })
            .collect();
        (stored, postcard::to_allocvec(&sent).unwrap())
    }

    #[test]
    fn stored_entries_are_sent_as_the_protocol_encodes_them() {
        let long_key = "k".repeat(130);
        let many: Vec<Entry> = (0..200)
            .map(|i| Entry::new(&format!("{long_key}{i}"), i % 3 == 0, &vec![i as u8; 300]))
            .collect();
        let cases = [
            vec![],
            vec![
                Entry::new("user", true, b"alice"),
                Entry::new("blob", false, &[0, 1, 255]),
            ],
            vec![
                Entry::new("empty", true, b""),
                Entry::new("none", false, b""),
            ],
            vec![Entry::new("note", true, "zürich ✓".as_bytes())],
            vec![Entry::new("big", false, &[7; 70_000])],
            many,
        ];
        for entries in cases {
            let (rewritten, derived) = both_ways(&entries);
            assert_eq!(rewritten, derived, "{} entries", entries.len());
        }
    }

    #[test]
    fn unreadable_stored_entries_are_refused() {
        let stored = encode(&[
            Entry::new("user", true, b"alice"),
            Entry::new("blob", false, &[7; 3]),
        ]);
        let refused = |mut bytes: Vec<u8>| {
            matches!(
                entries_to_wire(EntriesLayout::V0, &mut bytes),
                Err(LockboxError::Internal(m)) if m == "stored payload is unreadable"
            )
        };
        for cut in 0..stored.len() {
            assert!(refused(stored[..cut].to_vec()), "cut at {cut}");
        }
        let mut trailing = stored.to_vec();
        trailing.push(0);
        assert!(refused(trailing));
        let mut not_a_kind = stored.to_vec();
        // count, key length, "user", then the kind.
        not_a_kind[1 + 1 + 4] = 2;
        assert!(refused(not_a_kind));
        assert!(!refused(stored.to_vec()));
    }
}
