//! A connected Unix stream that asks the reactor about readability only.
//!
//! Tokio's own `UnixStream` registers every socket for both read and write readiness. On a
//! Unix socket the kernel then signals "writable" to the peer's epoll each time this end
//! consumes a message, so every request costs the client a wake-up it has no use for, and
//! every response costs the server one. Under load that was about a tenth of lockboxd's CPU.
//!
//! [`Stream`] registers for readability alone and writes straight to the socket. Only when a
//! write would block (the peer is not reading) does it register a duplicate of the socket for
//! writability, wait on that, and drop it once the backlog is written.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

/// Registers `stream` with the runtime's reactor for `interest`.
///
/// Tokio deprecated this safe constructor in favour of an `unsafe` one whose caller promises
/// that the descriptor stays open and unreplaced while registered. That holds here without
/// any promise: the `AsyncFd` owns the stream and the stream owns its descriptor, so it is
/// closed only after the registration is dropped. (The crate forbids `unsafe`.)
#[allow(deprecated)]
fn register(stream: StdStream, interest: Interest) -> io::Result<AsyncFd<StdStream>> {
    AsyncFd::with_interest(stream, interest)
}

/// A connected Unix stream registered for read readiness only.
#[derive(Debug)]
pub struct Stream {
    fd: Arc<AsyncFd<StdStream>>,
}

impl Stream {
    /// Takes over a connected tokio stream. Must be called inside the runtime.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        let std = stream.into_std()?;
        Ok(Self {
            fd: Arc::new(register(std, Interest::READABLE)?),
        })
    }

    /// Connects to the socket at `path`.
    pub async fn connect(path: &std::path::Path) -> io::Result<Self> {
        Self::new(UnixStream::connect(path).await?)
    }

    /// Splits into halves that read and write independently. Dropping the write half shuts
    /// down the writing direction, so the peer sees the end of the stream.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (
            ReadHalf {
                fd: self.fd.clone(),
            },
            WriteHalf {
                fd: self.fd,
                writable: None,
            },
        )
    }
}

/// The reading half of a [`Stream`].
#[derive(Debug)]
pub struct ReadHalf {
    fd: Arc<AsyncFd<StdStream>>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.fd.poll_read_ready(cx))?;
            // Callers pass initialized buffers (`FrameReader` and `BufReader` do), so this
            // does not zero anything.
            let unfilled = buf.initialize_unfilled();
            let wanted = unfilled.len();
            match ready.try_io(|fd| fd.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // A short read emptied the socket: skip the read that would only say so.
                    // A message arriving meanwhile re-arms readiness (the clear is ignored).
                    if n > 0 && n < wanted {
                        ready.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness was cleared, wait for the next event.
                Err(_) => {}
            }
        }
    }
}

/// The writing half of a [`Stream`].
#[derive(Debug)]
pub struct WriteHalf {
    fd: Arc<AsyncFd<StdStream>>,
    /// A duplicate of the socket registered for writability while a write is blocked.
    writable: Option<AsyncFd<StdStream>>,
}

impl WriteHalf {
    fn socket(&self) -> &StdStream {
        self.fd.get_ref()
    }

    /// Writes what the socket takes now, without waiting: `WouldBlock` when it takes
    /// nothing, or while an earlier write is still waiting for the peer.
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.writable.is_some() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            match self.socket().write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let Some(writable) = &self.writable else {
                match self.socket().write(buf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Registering checks the current state, so space freed since the
                        // failed write is not missed.
                        let dup = self.socket().try_clone()?;
                        self.writable = Some(register(dup, Interest::WRITABLE)?);
                    }
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            };
            let mut ready = ready!(writable.poll_write_ready(cx))?;
            match ready.try_io(|fd| fd.get_ref().write(buf)) {
                Ok(Ok(n)) => {
                    // The peer is reading again: back to plain writes.
                    self.writable = None;
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket().shutdown(std::net::Shutdown::Write))
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        // As tokio's owned write half does; the peer may already be gone.
        let _ = self.socket().shutdown(std::net::Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (Stream, Stream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Stream::new(a).unwrap(), Stream::new(b).unwrap())
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_waits_for_the_reader() {
        let (a, b) = pair().await;
        let (_a_read, mut a_write) = a.into_split();
        let (mut b_read, _b_write) = b.into_split();
        // Far more than a Unix socket buffers, so the writer must block and be woken.
        let data: Vec<u8> = (0..8 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::spawn(async move {
            a_write.write_all(&data).await.unwrap();
            a_write
        });
        let mut got = vec![0; expected.len()];
        let mut chunk = vec![0; 4096];
        let mut filled = 0;
        while filled < got.len() {
            let n = b_read.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream ended after {filled} bytes");
            got[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
        }
        assert!(got == expected, "bytes arrived changed or out of order");
        let a_write = writer.await.unwrap();
        assert!(
            a_write.writable.is_none(),
            "the writability registration outlived the backlog"
        );
    }

    #[tokio::test]
    async fn a_blocked_write_fails_when_the_peer_goes_away() {
        let (a, b) = pair().await;
        let (_a_read, mut a_write) = a.into_split();
        let writer = tokio::spawn(async move {
            let data = vec![7u8; 8 * 1024 * 1024];
            a_write.write_all(&data).await
        });
        // Let the writer fill the socket buffer and wait for writability, then hang up.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!writer.is_finished(), "8 MiB fit in the socket buffer");
        drop(b);
        let result = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("a write to a vanished peer hung")
            .expect("the writer task panicked");
        assert!(
            result.is_err(),
            "8 MiB written to a peer that never read them"
        );
    }

    #[tokio::test]
    async fn dropping_the_write_half_ends_the_peers_stream() {
        let (a, b) = pair().await;
        let (_a_read, mut a_write) = a.into_split();
        let (mut b_read, _b_write) = b.into_split();
        a_write.write_all(b"last words").await.unwrap();
        drop(a_write);
        let mut got = Vec::new();
        b_read.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");
    }
}
