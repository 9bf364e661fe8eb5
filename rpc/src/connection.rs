//! Buffered reading of frames from a byte stream.
//!
//! [`FrameReader::try_next`] yields frames already buffered and [`FrameReader::fill`] reads
//! more, so a caller can answer every request that arrived in one read before writing the
//! answers back in one write.

use lockbox_proto::Wiping;
use lockbox_proto::bytes::reserve_wiped;
use lockbox_proto::frame::{self, FrameError, LENGTH_PREFIX};
use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroize;

/// Read size when the buffer has no room left.
const READ_CHUNK: usize = 64 * 1024;

/// Reads frames from `io`, holding at most one frame plus one read's worth of bytes.
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The byte stream.
    io: R,
    /// Bytes read but not yet consumed are `buf[start..end]`. The whole buffer is
    /// initialized, so reads into it need no zeroing first. Frames may carry plaintexts:
    /// consumed bytes are wiped when the buffer is compacted, and the buffer when it is
    /// dropped or outgrown.
    buf: Wiping,
    /// Offset of the first unconsumed byte in `buf`.
    start: usize,
    /// End of the bytes read.
    end: usize,
    /// Largest frame body accepted.
    max_frame: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader over `io` refusing bodies larger than `max_frame`.
    pub fn new(io: R, max_frame: u32) -> Self {
        Self {
            io,
            buf: Wiping::new(vec![0; READ_CHUNK]),
            start: 0,
            end: 0,
            max_frame,
        }
    }

    /// The next frame body already in the buffer, if a whole one is there.
    pub fn try_next(&mut self) -> Result<Option<&[u8]>, FrameError> {
        match frame::split(&self.buf[self.start..self.end], self.max_frame)? {
            Some((used, _)) => {
                let body = self.start + LENGTH_PREFIX..self.start + used;
                self.start += used;
                Ok(Some(&self.buf[body]))
            }
            None => Ok(None),
        }
    }

    /// Changes the frame size limit, e.g. to the one a server announced.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Whether bytes of an incomplete frame are waiting.
    pub fn has_partial_frame(&self) -> bool {
        self.start < self.end
    }

    /// Reads more bytes; returns how many (0 at end of stream). Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        self.compact();
        let pending = self.end - self.start;
        // Make room for the rest of a partially received frame (its size was already checked
        // against the limit by `try_next`), or for one more chunk.
        let wanted = match self.buf[self.start..self.end].first_chunk::<LENGTH_PREFIX>() {
            Some(prefix) => (u32::from_be_bytes(*prefix) as usize + LENGTH_PREFIX)
                .saturating_sub(pending)
                .max(READ_CHUNK / 4),
            None => READ_CHUNK / 4,
        };
        if self.buf.len() - self.end < wanted {
            // Room made by moving and wiping, so the resize does not free the old buffer as
            // it was.
            let grown = self.end + wanted.max(READ_CHUNK);
            let more = grown - self.buf.len();
            reserve_wiped(&mut self.buf, more);
            self.buf.resize(grown, 0);
        }
        let read = self.io.read(&mut self.buf[self.end..]).await?;
        self.end += read;
        Ok(read)
    }

    /// Reads until one whole frame is buffered and returns it; `Ok(None)` at a clean end of
    /// stream between frames.
    pub async fn next(&mut self) -> Result<Option<&[u8]>, ReadError> {
        loop {
            // Split check and return to keep the borrow checker happy across the loop.
            if frame::split(&self.buf[self.start..self.end], self.max_frame)?.is_some() {
                return Ok(self.try_next()?);
            }
            if self.fill().await? == 0 {
                return if self.has_partial_frame() {
                    Err(ReadError::Truncated)
                } else {
                    Ok(None)
                };
            }
        }
    }

    /// Gives back the memory a large frame or a burst grew the buffer by, once nothing is
    /// pending in it (the old buffer is wiped on drop).
    pub fn shrink(&mut self) {
        if self.start == self.end && self.buf.len() > 2 * READ_CHUNK {
            self.buf = Wiping::new(vec![0; READ_CHUNK]);
            (self.start, self.end) = (0, 0);
        }
    }

    /// Drops consumed bytes from the front of the buffer, wiping them.
    fn compact(&mut self) {
        if self.start == self.end {
            self.buf[..self.end].zeroize();
            (self.start, self.end) = (0, 0);
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            let pending = self.end - self.start;
            self.buf.copy_within(self.start..self.end, 0);
            self.buf[pending..self.end].zeroize();
            (self.start, self.end) = (0, pending);
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The stream failed.
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is unacceptable.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_frames_split_across_writes() {
        let (mut a, b) = tokio::io::duplex(16);
        let mut bytes = Vec::new();
        for i in 0..50u32 {
            frame::encode(&(i, "payload".repeat(i as usize)), &mut bytes, 1 << 20).unwrap();
        }
        let writer = tokio::spawn(async move {
            for chunk in bytes.chunks(7) {
                a.write_all(chunk).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(b, 1 << 20);
        for i in 0..50u32 {
            let body = reader.next().await.unwrap().unwrap();
            let (n, s): (u32, String) = frame::decode(body).unwrap();
            assert_eq!((n, s.len()), (i, 7 * i as usize));
        }
        writer.await.unwrap();
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn consumed_frames_are_wiped_from_the_buffer() {
        let (mut a, b) = tokio::io::duplex(256 * 1024);
        let mut bytes = Vec::new();
        frame::encode(&"e".repeat(40_000), &mut bytes, 1 << 20).unwrap();
        let first = bytes.len();
        frame::encode(&"q".repeat(100), &mut bytes, 1 << 20).unwrap();
        // All of the first frame and the start of the second.
        a.write_all(&bytes[..first + 50]).await.unwrap();
        let mut reader = FrameReader::new(b, 1 << 20);
        let body = reader.next().await.unwrap().unwrap();
        assert_eq!(frame::decode::<String>(body).unwrap().len(), 40_000);
        let end = reader.end;
        assert_eq!(end, first + 50);
        // More than half the buffer is consumed: the rest moves to the front, and what it
        // leaves behind is wiped.
        reader.compact();
        assert_eq!((reader.start, reader.end), (0, 50));
        assert_eq!(&reader.buf[..50], &bytes[first..first + 50]);
        assert!(reader.buf[50..end].iter().all(|&b| b == 0));

        a.write_all(&bytes[first + 50..]).await.unwrap();
        let body = reader.next().await.unwrap().unwrap();
        assert_eq!(frame::decode::<String>(body).unwrap(), "q".repeat(100));
        // Everything consumed: all of it is wiped.
        reader.compact();
        assert_eq!((reader.start, reader.end), (0, 0));
        assert!(reader.buf.iter().all(|&b| b == 0));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_buffer_is_read_whole() {
        let (mut a, b) = tokio::io::duplex(16 * 1024);
        let mut bytes = Vec::new();
        frame::encode(&"s".repeat(10), &mut bytes, 1 << 20).unwrap();
        frame::encode(&"z".repeat(200_000), &mut bytes, 1 << 20).unwrap();
        frame::encode(&"t".repeat(10), &mut bytes, 1 << 20).unwrap();
        let writer = tokio::spawn(async move { a.write_all(&bytes).await.unwrap() });
        let mut reader = FrameReader::new(b, 1 << 20);
        for expected in ["s".repeat(10), "z".repeat(200_000), "t".repeat(10)] {
            let body = reader.next().await.unwrap().unwrap();
            assert_eq!(frame::decode::<String>(body).unwrap(), expected);
        }
        writer.await.unwrap();
        assert!(reader.buf.len() > 2 * READ_CHUNK);
        reader.shrink();
        assert_eq!(reader.buf.len(), READ_CHUNK);
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn truncated_frame_is_reported() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(a);
        let mut reader = FrameReader::new(b, 1 << 20);
        assert!(matches!(reader.next().await, Err(ReadError::Truncated)));
    }
}
