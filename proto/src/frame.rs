//! Frames: a 4-byte big-endian body length followed by a postcard body.
//!
//! Sans-io: [`encode`] appends a frame to a buffer and [`split`] finds the first complete frame
//! in one. The announced length is checked against the limit before anything is allocated for
//! the body, so a peer announcing 4 GiB costs nothing.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes taken by the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Default limit on a frame body: 1 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Why a frame could not be produced or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The body is larger than the limit of the side that checks it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced or produced body length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The body is not a valid postcard encoding of the expected message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A postcard output flavor that appends to a borrowed vector, so a failed encoding can be
/// rolled back without losing what the buffer already held.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `message` to `out` as one frame. On error `out` is left as it was.
pub fn encode<T: Serialize + ?Sized>(
    message: &T,
    out: &mut Vec<u8>,
    max: u32,
) -> Result<(), FrameError> {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX]);
    if let Err(e) = postcard::serialize_with_flavor(message, AppendTo(out)) {
        out.truncate(start);
        return Err(FrameError::Malformed(e.to_string()));
    }
    let len = out.len() - start - LENGTH_PREFIX;
    if len > max as usize {
        out.truncate(start);
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        });
    }
    // `len <= max`, a u32, so the conversion cannot truncate.
    out[start..start + LENGTH_PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Finds the first complete frame at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or `Ok(Some((consumed, body)))` where
/// `consumed` counts the prefix and the body. A body announced larger than `max` is an error
/// as soon as the prefix is seen.
pub fn split(buf: &[u8], max: u32) -> Result<Option<(usize, &[u8])>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*prefix);
    if len > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    let end = LENGTH_PREFIX + len as usize;
    match buf.get(LENGTH_PREFIX..end) {
        Some(body) => Ok(Some((end, body))),
        None => Ok(None),
    }
}

/// Decodes a whole frame body as `T`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Malformed(format!(
            "{} unexpected trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(FrameError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_split_round_trips() {
        let mut buf = Vec::new();
        encode(&(7u64, "hello"), &mut buf, DEFAULT_MAX_FRAME).unwrap();
        encode(&(8u64, "world"), &mut buf, DEFAULT_MAX_FRAME).unwrap();
        let (used, body) = split(&buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(decode::<(u64, String)>(body).unwrap(), (7, "hello".into()));
        let (used2, body) = split(&buf[used..], DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!(decode::<(u64, String)>(body).unwrap(), (8, "world".into()));
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn split_waits_for_partial_prefix_and_body() {
        let mut buf = Vec::new();
        encode(&"abcdef", &mut buf, DEFAULT_MAX_FRAME).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(
                split(&buf[..cut], DEFAULT_MAX_FRAME),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert!(split(&buf, DEFAULT_MAX_FRAME).unwrap().is_some());
    }

    #[test]
    fn oversized_announcement_is_refused_from_the_prefix_alone() {
        let buf = u32::MAX.to_be_bytes();
        assert_eq!(
            split(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn encode_refuses_oversized_body_and_keeps_buffer() {
        let mut buf = vec![1, 2, 3];
        let big = vec![0u8; 100];
        let err = encode(&big, &mut buf, 50).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { max: 50, .. }));
        assert_eq!(buf, vec![1, 2, 3]);
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut body = postcard::to_allocvec(&5u64).unwrap();
        body.push(0);
        assert!(matches!(
            decode::<u64>(&body),
            Err(FrameError::Malformed(_))
        ));
    }
}
