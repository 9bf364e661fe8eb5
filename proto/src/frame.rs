//! Frames: a 4-byte big-endian body length followed by a postcard body.
//!
//! Sans-io: [`encode`] appends a frame to a buffer and [`split`] finds the first complete frame
//! in one. The announced length is checked against the limit before anything is allocated for
//! the body, so a peer announcing 4 GiB costs nothing.

use crate::bytes::reserve_wiped;
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroize;

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
/// rolled back without losing what the buffer already held. The vector grows by moving and
/// wiping ([`reserve_wiped`]): frames may hold plaintexts.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        reserve_wiped(self.0, 1);
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        reserve_wiped(self.0, data.len());
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
    let mut frame = FrameWriter::begin(out);
    frame.append(message)?;
    frame.finish(max)
}

/// A frame being appended to a buffer, its body written in parts: [`append`](Self::append)
/// encodes a value, [`body`](Self::body) takes raw bytes. Postcard puts nothing between or
/// after a message's fields, so a body made of a message's leading fields followed by the
/// encoding of the rest, written by other means, decodes as the whole message.
///
/// [`finish`](Self::finish) writes the length prefix. A frame dropped unfinished is taken
/// back out of the buffer, its bytes wiped first (a body may hold plaintext).
#[derive(Debug)]
pub struct FrameWriter<'a> {
    out: &'a mut Vec<u8>,
    /// Where the frame's length prefix starts.
    start: usize,
    /// Whether the prefix is written and the frame stays.
    finished: bool,
}

impl<'a> FrameWriter<'a> {
    /// Starts a frame at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        reserve_wiped(out, LENGTH_PREFIX);
        out.extend_from_slice(&[0; LENGTH_PREFIX]);
        Self {
            out,
            start,
            finished: false,
        }
    }

    /// Appends `value`'s encoding to the body.
    pub fn append<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FrameError> {
        postcard::serialize_with_flavor(value, AppendTo(self.out))
            .map_err(|e| FrameError::Malformed(e.to_string()))
    }

    /// The buffer, for appending body bytes directly. Bytes before the body must be left
    /// as they are, and room made with [`reserve_wiped`] (other frames may be before it).
    pub fn body(&mut self) -> &mut Vec<u8> {
        self.out
    }

    /// Writes the length prefix, or takes the frame back out if its body is larger than
    /// `max`.
    pub fn finish(mut self, max: u32) -> Result<(), FrameError> {
        let len = self.out.len() - self.start - LENGTH_PREFIX;
        if len > max as usize {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max,
            });
        }
        // `len <= max`, a u32, so the conversion cannot truncate.
        let prefix = self.start..self.start + LENGTH_PREFIX;
        self.out[prefix].copy_from_slice(&(len as u32).to_be_bytes());
        self.finished = true;
        Ok(())
    }
}

impl Drop for FrameWriter<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let start = self.start.min(self.out.len());
        self.out[start..].zeroize();
        self.out.truncate(start);
    }
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
    fn a_body_written_in_parts_decodes_as_the_whole_message() {
        let mut buf = vec![9];
        let mut frame = FrameWriter::begin(&mut buf);
        frame.append(&7u64).unwrap();
        let rest = postcard::to_allocvec("hello").unwrap();
        frame.body().extend_from_slice(&rest);
        frame.finish(DEFAULT_MAX_FRAME).unwrap();
        let mut whole = vec![9];
        encode(&(7u64, "hello"), &mut whole, DEFAULT_MAX_FRAME).unwrap();
        assert_eq!(buf, whole);
    }

    #[test]
    fn an_unfinished_or_oversized_frame_is_taken_back() {
        let mut buf = vec![1, 2, 3];
        let mut frame = FrameWriter::begin(&mut buf);
        frame.body().extend_from_slice(b"secret");
        drop(frame);
        assert_eq!(buf, vec![1, 2, 3]);
        let mut frame = FrameWriter::begin(&mut buf);
        frame.body().extend_from_slice(&[7; 51]);
        let err = frame.finish(50).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { len: 51, max: 50 });
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
