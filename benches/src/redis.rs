//! A minimal pipelined RESP client, so Redis is driven by the same load loop as lockbox:
//! commands are queued to a writer task and replies matched in order by a reader task, over
//! the same socket transport as lockbox's client.

use anyhow::{Context, Result, bail};
use lockbox_rpc::stream::Stream;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// One Redis connection with any number of commands in flight.
#[derive(Clone)]
pub(crate) struct Redis {
    /// Encoded commands for the writer, each with the waiter of its reply.
    outgoing: mpsc::UnboundedSender<(Vec<u8>, oneshot::Sender<Result<Reply>>)>,
}

/// A reply, as far as the bench needs one.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `+OK` and other simple strings.
    Simple,
    /// A bulk string (`None` for a missing key).
    Bulk(Option<Vec<u8>>),
}

type Waiters = Arc<Mutex<VecDeque<oneshot::Sender<Result<Reply>>>>>;

/// A command as RESP frames it: an array of bulk strings, in one buffer sized up front.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    header(&mut out, b'*', args.len());
    for a in args {
        header(&mut out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `kind`, `n` in decimal, CRLF.
fn header(out: &mut Vec<u8>, kind: u8, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(kind);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

async fn read_reply<R: AsyncBufReadExt + Unpin>(r: &mut R, line: &mut String) -> Result<Reply> {
    line.clear();
    if r.read_line(line).await? == 0 {
        bail!("redis closed the connection");
    }
    let text = line.trim_end();
    match text.as_bytes().first() {
        Some(b'+') => Ok(Reply::Simple),
        Some(b'-') => bail!("redis error: {text}"),
        Some(b'$') => {
            let len: i64 = text[1..].parse().context("bad bulk length")?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut data = vec![0u8; len as usize + 2];
            r.read_exact(&mut data).await?;
            data.truncate(len as usize);
            Ok(Reply::Bulk(Some(data)))
        }
        _ => bail!("unexpected redis reply {text:?}"),
    }
}

impl Redis {
    /// Connects to a Redis Unix socket.
    pub(crate) async fn connect(path: &Path) -> Result<Self> {
        let stream = Stream::connect(path)
            .await
            .with_context(|| format!("connecting to redis at {}", path.display()))?;
        let (read, mut write) = stream.into_split();
        let waiters: Waiters = Arc::default();
        let (outgoing, mut queue) =
            mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<Result<Reply>>)>();
        let writer_waiters = waiters.clone();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some((cmd, tx)) = queue.recv().await {
                // The waiter goes in before the bytes go out, so replies find it.
                let mut pending = vec![tx];
                batch.extend_from_slice(&cmd);
                while let Ok((cmd, tx)) = queue.try_recv() {
                    batch.extend_from_slice(&cmd);
                    pending.push(tx);
                }
                writer_waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(pending);
                if write.write_all(&batch).await.is_err() {
                    return;
                }
                batch.clear();
            }
        });
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(64 * 1024, read);
            let mut line = String::new();
            loop {
                let reply = read_reply(&mut reader, &mut line).await;
                let failed = reply.is_err();
                let waiter = waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop_front();
                if let Some(tx) = waiter {
                    let _ = tx.send(reply);
                }
                if failed {
                    return;
                }
            }
        });
        Ok(Self { outgoing })
    }

    /// Sends a command and waits for its reply.
    pub(crate) async fn command(&self, args: &[&[u8]]) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.outgoing
            .send((encode(args), tx))
            .map_err(|_| anyhow::anyhow!("redis connection closed"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("redis connection closed"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_framed_as_resp_arrays() {
        assert_eq!(
            encode(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
        let value = vec![b'v'; 1234];
        let framed = encode(&[b"SET", b"key", &value]);
        let head = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$1234\r\n";
        assert_eq!(&framed[..head.len()], head);
        assert_eq!(&framed[head.len()..], [&value[..], b"\r\n"].concat());
        assert_eq!(encode(&[b""]), b"*1\r\n$0\r\n\r\n".to_vec());
    }
}
