//! Fuzz targets: the parsers that read bytes a hostile peer, token holder or user chooses.
//!
//! Each target takes arbitrary bytes and panics only when it finds a bug: a parser that
//! panics itself, or two readings of the same bytes that disagree. The in-place parsers of
//! the hottest requests and answers are held against the full decoding of the same frame,
//! which they must match exactly whenever they accept it.
//!
//! The AFL++ harness in `fuzz/afl` runs one binary per target; `tests/corpus.rs` runs every
//! file of `fuzz/corpus/<target>/` through the same function as a plain test.
#![forbid(unsafe_code)]

mod answers;
mod frames;
mod requests;
pub mod seeds;
mod text;

/// A fuzz target: bytes in, a panic only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name; the name is also its corpus directory and its AFL++ binary.
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames::frames),
    ("lockbox_request", requests::lockbox_request),
    ("kms_request", requests::kms_request),
    ("answers", answers::answers),
    ("token", text::token),
    ("payload_json", text::payload_json),
];

/// The frame body `value` encodes to, as a server or client writes it.
pub(crate) fn frame_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    lockbox_proto::frame::encode(value, &mut out, u32::MAX)
        .unwrap_or_else(|e| panic!("encoding: {e}"));
    out.split_off(lockbox_proto::frame::LENGTH_PREFIX)
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use lockbox_proto::kms::{DecryptCall, decrypted_plaintext};
    use lockbox_proto::lockbox::GetPayloadRef;
    use lockbox_proto::payload::PayloadLayout;

    /// The seeds start the fuzzer inside the in-place readers, not at their first refusal.
    #[test]
    fn the_seeds_reach_the_in_place_readers() {
        let seeds: std::collections::HashMap<_, _> = crate::seeds::seeds().into_iter().collect();
        assert!(GetPayloadRef::parse(&seeds["lockbox_request"][0]).is_some());
        assert!(GetPayloadRef::parse(&seeds["lockbox_request"][1]).is_some());
        let relayed = DecryptCall::parse(&seeds["kms_request"][1]).and_then(|c| c.on_behalf_of);
        assert_eq!(relayed.map(|p| p.groups.len()), Some(2));
        assert!(PayloadLayout::parse(&seeds["answers"][0]).is_some());
        assert!(decrypted_plaintext(&seeds["answers"][1]).is_some());
        assert!(
            lockbox_proto::token::parse(
                std::str::from_utf8(&seeds["token"][0]).unwrap_or_default()
            )
            .is_some()
        );
        for (name, target) in crate::TARGETS {
            for seed in &seeds[name] {
                target(seed);
            }
        }
    }
}
