//! Byte strings on the wire: plain ones encoded as one length-prefixed run, and
//! [`SecretBytes`] for plaintexts, which are zeroized on drop and never printed.

use serde::{Deserializer, Serializer, de};
use std::fmt;
use zeroize::{Zeroize, Zeroizing};

/// `bytes` in lowercase hex, as checksums, chain hashes and token ids are written.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Serde adapter for `Vec<u8>` fields: encode as a byte string rather than a sequence of
/// integers (the same bytes in postcard, but decoded in one copy instead of byte by byte).
pub mod vec {
    use super::*;

    /// Serializes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Deserializes a byte string into an owned vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_byte_buf(ByteBufVisitor)
    }
}

/// A borrowed byte string, encoded as [`vec`] and [`SecretBytes`] encode theirs: for the
/// borrowed forms of messages.
pub(crate) struct Borrowed<'a>(pub(crate) &'a [u8]);

impl serde::Serialize for Borrowed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// Serde adapter for `Zeroizing<Vec<u8>>` fields (key material): the same encoding as
/// [`vec`](mod@vec), and the decoded bytes go straight into the zeroizing wrapper.
pub mod zeroizing {
    use super::*;

    /// Serializes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(
        bytes: &Zeroizing<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Deserializes a byte string into a zeroizing vector.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        deserializer
            .deserialize_byte_buf(ByteBufVisitor)
            .map(Zeroizing::new)
    }
}

struct ByteBufVisitor;

impl<'de> de::Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// Postcard bytes (a length, then the bytes) checked to be UTF-8, and what follows them: a
/// text field read in place whose conversion to `str` waits until someone reads it. Ids and
/// keys are ASCII, which is checked faster than UTF-8 in general.
pub(crate) fn take_text(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (text, rest) = postcard::take_from_bytes::<&[u8]>(bytes).ok()?;
    (text.is_ascii() || std::str::from_utf8(text).is_ok()).then_some((text, rest))
}

/// A byte vector zeroed when dropped, like `Zeroizing<Vec<u8>>`, but wiped in bulk: `Zeroize`
/// on a slice fills it behind an optimisation barrier, while on a `Vec` it writes one element
/// at a time, which is many times slower for a value of some kilobytes. Grow it with
/// [`extend_wiped`](Self::extend_wiped) or [`reserve_wiped`]: `Vec`'s own growth, reached
/// through `DerefMut`, frees the old allocation as it was.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Wiping(Vec<u8>);

impl Wiping {
    /// Wraps `bytes`; they and the vector's spare capacity are zeroed when it is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Appends `bytes`, growing as [`reserve_wiped`] does.
    pub fn extend_wiped(&mut self, bytes: &[u8]) {
        reserve_wiped(&mut self.0, bytes.len());
        self.0.extend_from_slice(bytes);
    }

    /// Zeroes the bytes and empties the vector, keeping its allocation.
    pub fn wipe_and_clear(&mut self) {
        self.0.as_mut_slice().zeroize();
        self.0.clear();
    }
}

impl Drop for Wiping {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::ops::Deref for Wiping {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Wiping {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl fmt::Debug for Wiping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wiping([REDACTED; {}])", self.0.len())
    }
}

/// Makes room for `additional` more bytes. When `bytes` must grow, its contents move to a new
/// allocation (at least twice as large, as `Vec` grows) and the old one is wiped, where
/// `Vec::reserve` would free it as it is. For buffers that may hold plaintexts.
#[inline]
pub fn reserve_wiped(bytes: &mut Vec<u8>, additional: usize) {
    if bytes.capacity() - bytes.len() < additional {
        grow_wiped(bytes, additional);
    }
}

#[cold]
fn grow_wiped(bytes: &mut Vec<u8>, additional: usize) {
    let needed = bytes.len().saturating_add(additional);
    let mut bigger = Vec::with_capacity(needed.max(bytes.capacity().saturating_mul(2)));
    bigger.extend_from_slice(bytes);
    let mut old = std::mem::replace(bytes, bigger);
    wipe(&mut old);
}

/// Zeroes `bytes` and its spare capacity, in bulk.
fn wipe(bytes: &mut Vec<u8>) {
    bytes.as_mut_slice().zeroize();
    bytes.spare_capacity_mut().zeroize();
}

/// Sensitive bytes (plaintexts, data keys): zeroized when dropped, redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretBytes(Wiping);

impl SecretBytes {
    /// Wraps `bytes`; the vector is zeroized when the wrapper is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Wiping(bytes))
    }

    /// The secret bytes. Callers must not copy them into memory that outlives the wrapper
    /// without zeroizing it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

impl serde::Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_byte_buf(ByteBufVisitor)
            .map(SecretBytes::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_debug_is_redacted() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "SecretBytes([REDACTED; 7])");
        let mut w = Wiping::new(b"hunter2".to_vec());
        w.extend_from_slice(b"!");
        assert_eq!(format!("{w:?}"), "Wiping([REDACTED; 8])");
        assert_eq!(w.as_slice(), b"hunter2!");
    }

    #[test]
    fn wiping_zeroes_the_bytes_in_place() {
        // The spare capacity is wiped too, but cannot be read back without `unsafe`.
        for len in [0, 1, 7, 64, 4096, 5000] {
            let mut bytes = vec![0xa5; len];
            let (at, capacity) = (bytes.as_ptr(), bytes.capacity());
            wipe(&mut bytes);
            assert_eq!(
                (bytes.len(), bytes.as_ptr(), bytes.capacity()),
                (len, at, capacity)
            );
            assert!(bytes.iter().all(|&b| b == 0), "{len} bytes");
        }
    }

    #[test]
    fn a_wiping_vector_grows_by_moving_and_clears_by_wiping() {
        let mut w = Wiping::new(Vec::with_capacity(4));
        w.extend_wiped(b"abc");
        let first = w.as_ptr();
        w.extend_wiped(b"d");
        assert_eq!(w.as_ptr(), first, "room left: no move");
        w.extend_wiped(b"efgh");
        assert_eq!(w.as_slice(), b"abcdefgh");
        assert!(w.capacity() >= 8);
        let (at, capacity) = (w.as_ptr(), w.capacity());
        w.wipe_and_clear();
        assert!(w.is_empty());
        assert_eq!((w.as_ptr(), w.capacity()), (at, capacity));
        w.extend_wiped(&[]);
        assert!(w.is_empty());
    }

    #[test]
    fn reserving_moves_only_when_there_is_no_room() {
        let mut bytes = Vec::with_capacity(8);
        bytes.extend_from_slice(b"abcd");
        let at = bytes.as_ptr();
        reserve_wiped(&mut bytes, 4);
        assert_eq!((bytes.as_ptr(), bytes.capacity()), (at, 8));
        reserve_wiped(&mut bytes, 5);
        assert_eq!(bytes, b"abcd");
        assert!(bytes.capacity() >= 16, "doubles: {}", bytes.capacity());
        reserve_wiped(&mut bytes, 1000);
        assert_eq!(bytes, b"abcd");
        assert!(bytes.capacity() >= 1004);
        let mut empty = Vec::new();
        reserve_wiped(&mut empty, 0);
        assert_eq!(empty.capacity(), 0);
    }

    #[test]
    fn secret_bytes_round_trip_matches_plain_vec_encoding() {
        let s = SecretBytes::new(vec![1, 2, 3, 255]);
        let encoded = postcard::to_allocvec(&s).unwrap();
        assert_eq!(
            encoded,
            postcard::to_allocvec(&vec![1u8, 2, 3, 255]).unwrap()
        );
        let decoded: SecretBytes = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded.expose(), &[1, 2, 3, 255]);
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
