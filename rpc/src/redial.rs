//! A client connection that is opened again when the server ends it.
//!
//! A server ends a connection whose identity lapsed (its maximum age, an expired token)
//! by refusing every request it has received with `Unauthenticated` and closing: none of
//! those requests ran. [`Redial`] keeps the connection in use, opens a new one when the old
//! one has closed or is due for renewal, and lets a caller send a refused request once more
//! on it. What a new connection must do before use (authenticate) is the caller's
//! [`Prepare`].

use crate::channel::{CallError, Channel};
use lockbox_proto::hello::Service;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Readies a new connection for use, and says when (by [`Prepare::now`]) to replace it
/// before it lapses, if ever.
pub trait Prepare<Resp>: Send + Sync + 'static {
    /// Runs on every new connection before any request is sent on it.
    fn prepare<'a>(
        &'a self,
        channel: &'a Channel<Resp>,
    ) -> Pin<Box<dyn Future<Output = Result<Option<i64>, CallError>> + Send + 'a>>;

    /// Now, on the clock `prepare`'s renewal times are on.
    fn now(&self) -> i64;
}

/// Whether an answer says the connection's identity lapsed and the request did not run.
fn lapsed<T>(result: &Result<T, CallError>) -> bool {
    result.as_ref().err().is_some_and(CallError::is_lapsed)
}

/// A connection to a server, opened again when it ends. Share it behind an `Arc`.
pub struct Redial<Resp> {
    /// The server's socket.
    socket: PathBuf,
    /// The process expected there.
    service: Service,
    /// How the client names itself in its hello.
    client: &'static str,
    /// What a new connection needs before use; none for a plain local-user connection.
    prepare: Option<Box<dyn Prepare<Resp>>>,
    /// Set when the connection was switched to an identity a new connection cannot take
    /// again (a token someone else signed): it is then never replaced, so nothing falls
    /// back to another identity.
    pinned: AtomicBool,
    /// The connection in use, and when to replace it.
    current: Mutex<Current<Resp>>,
    /// Held while a new connection opens, so concurrent calls open one, not many.
    redialling: tokio::sync::Mutex<()>,
}

impl<Resp> std::fmt::Debug for Redial<Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redial")
            .field("socket", &self.socket)
            .field("service", &self.service)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// The connection in use.
struct Current<Resp> {
    /// The connection.
    channel: Channel<Resp>,
    /// When to replace it before it lapses, by [`Prepare::now`].
    renew_at: Option<i64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<Resp: DeserializeOwned + Send + 'static> Redial<Resp> {
    /// Connects to `service` at `socket` and prepares the connection.
    pub async fn connect(
        socket: &Path,
        service: Service,
        client: &'static str,
        prepare: Option<Box<dyn Prepare<Resp>>>,
    ) -> Result<Self, CallError> {
        let current = open(socket, service, client, prepare.as_deref()).await?;
        Ok(Self {
            socket: socket.to_owned(),
            service,
            client,
            prepare,
            pinned: AtomicBool::new(false),
            current: Mutex::new(current),
            redialling: tokio::sync::Mutex::new(()),
        })
    }

    /// The connection in use, as it is.
    pub fn current(&self) -> Channel<Resp> {
        lock(&self.current).channel.clone()
    }

    /// The connection to send on: the one in use, or a new one when it has closed or is due
    /// for renewal.
    pub async fn channel(&self) -> Result<Channel<Resp>, CallError> {
        match self.usable() {
            Ok(channel) => Ok(channel),
            Err(stale) => self.channel_after(stale).await,
        }
    }

    /// The connection to send on in place of `stale`, which [`usable`](Self::usable) refused:
    /// a new one, or `stale` itself when the connection is pinned (calls on it then fail).
    pub async fn channel_after(&self, stale: Channel<Resp>) -> Result<Channel<Resp>, CallError> {
        Ok(self.redial(&stale).await?.unwrap_or(stale))
    }

    /// The connection in use if it can be sent on as it is; else `Err` with it, to redial.
    /// The common case, without an `await`.
    #[inline]
    pub fn usable(&self) -> Result<Channel<Resp>, Channel<Resp>> {
        let current = lock(&self.current);
        let due = match (&self.prepare, current.renew_at) {
            (Some(p), Some(at)) => p.now() >= at,
            _ => false,
        };
        if current.channel.is_closed() || due {
            Err(current.channel.clone())
        } else {
            Ok(current.channel.clone())
        }
    }

    /// A new connection in place of `stale` (or the one another call already opened), to
    /// send a refused request on again; `None` when the connection is pinned.
    pub async fn redial(&self, stale: &Channel<Resp>) -> Result<Option<Channel<Resp>>, CallError> {
        if self.pinned.load(Ordering::Acquire) {
            return Ok(None);
        }
        let _one_at_a_time = self.redialling.lock().await;
        {
            let current = lock(&self.current);
            if !current.channel.same_connection(stale) {
                return Ok(Some(current.channel.clone()));
            }
        }
        let fresh = open(
            &self.socket,
            self.service,
            self.client,
            self.prepare.as_deref(),
        )
        .await?;
        let channel = fresh.channel.clone();
        *lock(&self.current) = fresh;
        Ok(Some(channel))
    }

    /// Never replaces the connection from now on: it acts as an identity a new connection
    /// could not take again.
    pub fn pin(&self) {
        self.pinned.store(true, Ordering::Release);
    }

    /// Runs `call` on the connection, and once more on a new one if the answer says the
    /// identity lapsed.
    pub async fn call_with<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: Fn(Channel<Resp>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let channel = self.channel().await?;
        let answer = call(channel.clone()).await;
        self.again_if_lapsed(answer, &channel, call).await
    }

    /// `answer`, or, if it says the identity of `channel` lapsed, what `call` answers on a
    /// new connection (when one can be opened).
    pub async fn again_if_lapsed<T, F, Fut>(
        &self,
        answer: Result<T, CallError>,
        channel: &Channel<Resp>,
        call: F,
    ) -> Result<T, CallError>
    where
        F: Fn(Channel<Resp>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        if !lapsed(&answer) {
            return answer;
        }
        match self.redial(channel).await? {
            Some(fresh) => call(fresh).await,
            None => answer,
        }
    }
}

async fn open<Resp: DeserializeOwned + Send + 'static>(
    socket: &Path,
    service: Service,
    client: &str,
    prepare: Option<&dyn Prepare<Resp>>,
) -> Result<Current<Resp>, CallError> {
    let channel = Channel::connect(socket, service, client).await?;
    let renew_at = match prepare {
        Some(p) => p.prepare(&channel).await?,
        None => None,
    };
    Ok(Current { channel, renew_at })
}
