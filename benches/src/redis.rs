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

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
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
