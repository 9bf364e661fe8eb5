//! The frame layer: [`frame::split`] over a whole buffer, and the servers' and clients'
//! buffered [`FrameReader`] fed the same bytes in uneven reads, which must yield the same
//! frames and end the same way.

use lockbox_proto::frame::{self, FrameError, LENGTH_PREFIX};
use lockbox_proto::hello::{Hello, HelloReply};
use lockbox_rpc::connection::{FrameReader, ReadError};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// The first byte sets the frame limit (in steps of 64 bytes, so 0 is allowed), the second
/// the pattern of read sizes; the rest is the stream.
pub(crate) fn frames(data: &[u8]) {
    let [limit, reads, stream @ ..] = data else {
        return;
    };
    let max = u32::from(*limit) * 64;
    let expected = split_all(stream, max);
    let got = read_all(stream, max, *reads);
    assert_eq!(got, expected, "FrameReader and split disagree");
    for body in expected.frames.iter() {
        hello(body);
    }
}

/// How a stream of frames reads: the bodies, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Reading {
    frames: Vec<Vec<u8>>,
    end: End,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Between frames.
    Clean,
    /// Inside a frame.
    Truncated,
    /// A prefix announced more than the limit.
    TooLarge(u64),
}

/// The reading by [`frame::split`] over the whole stream, with its own invariants checked.
fn split_all(mut rest: &[u8], max: u32) -> Reading {
    let mut frames = Vec::new();
    let end = loop {
        match frame::split(rest, max) {
            Ok(Some((used, body))) => {
                assert_eq!(used, LENGTH_PREFIX + body.len());
                assert!(body.len() <= max as usize);
                assert_eq!(body, &rest[LENGTH_PREFIX..used]);
                frames.push(body.to_vec());
                rest = &rest[used..];
            }
            Ok(None) if rest.is_empty() => break End::Clean,
            Ok(None) => break End::Truncated,
            Err(FrameError::TooLarge { len, max: limit }) => {
                assert!(len > u64::from(limit));
                break End::TooLarge(len);
            }
            Err(other) => panic!("split failed other than by size: {other}"),
        }
    };
    Reading { frames, end }
}

/// The reading by a [`FrameReader`] given the stream a few bytes at a time.
fn read_all(stream: &[u8], max: u32, reads: u8) -> Reading {
    let io = Uneven {
        rest: stream,
        pattern: reads,
        turn: 0,
    };
    let mut reader = FrameReader::new(io, max);
    let mut frames = Vec::new();
    let end = loop {
        match ready(reader.next()) {
            Ok(Some(body)) => frames.push(body.to_vec()),
            Ok(None) => break End::Clean,
            Err(ReadError::Truncated) => break End::Truncated,
            Err(ReadError::Frame(FrameError::TooLarge { len, .. })) => break End::TooLarge(len),
            Err(other) => panic!("FrameReader failed unexpectedly: {other}"),
        }
        if frames.len() % 3 == 0 {
            reader.shrink();
        }
    };
    Reading { frames, end }
}

/// Hellos are the first frame a server reads: decoding one must not panic, and what decodes
/// encodes back to a frame that decodes the same.
fn hello(body: &[u8]) {
    if let Ok(hello) = frame::decode::<Hello>(body) {
        assert_eq!(round_trip(&hello), hello);
    }
    if let Ok(reply) = frame::decode::<HelloReply>(body) {
        assert_eq!(round_trip(&reply), reply);
    }
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let mut out = Vec::new();
    frame::encode(value, &mut out, u32::MAX).unwrap_or_else(|e| panic!("re-encoding: {e}"));
    let (_, body) = frame::split(&out, u32::MAX)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("re-encoded frame does not split"));
    frame::decode(body).unwrap_or_else(|e| panic!("re-encoded frame does not decode: {e}"))
}

/// A byte stream that hands out its bytes in reads of varying sizes, never pending.
struct Uneven<'a> {
    rest: &'a [u8],
    pattern: u8,
    turn: u8,
}

impl AsyncRead for Uneven<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Sizes from 1 to 64, cycling with the pattern; 0 of the pattern reads all at once.
        let size = match self.pattern {
            0 => usize::MAX,
            p => usize::from(self.turn.wrapping_mul(p) % 64) + 1,
        };
        self.turn = self.turn.wrapping_add(1);
        let n = size.min(buf.remaining()).min(self.rest.len());
        buf.put_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose I/O is always ready to its end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}
