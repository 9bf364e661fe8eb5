//! The metrics endpoint: `GET /metrics` over HTTP/1.x on a loopback TCP listener, one
//! request per connection.
//!
//! Any local user can connect, so what one can hold is bounded as on the Unix sockets: a
//! few scrapes at once (more are closed at once), a request head of a few KiB that must
//! arrive within seconds, an answer that must be taken within seconds. Nothing a scraper
//! sends is echoed back.

use super::Metrics;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Scrapes served at once; a connection beyond them is closed unanswered.
pub const MAX_SCRAPERS: usize = 4;

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// How long a scraper has to send its request, and to take the answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `metrics` on `listener`, if there is one, in a task of its own (abort it to stop).
pub fn spawn(
    metrics: &Metrics,
    listener: Option<std::net::TcpListener>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = listener?;
    let metrics = metrics.clone();
    Some(tokio::spawn(async move {
        if let Err(e) = serve(metrics, listener).await {
            tracing::error!(error = %e, "metrics: cannot serve");
        }
    }))
}

/// Serves `metrics` on `listener` until the task is dropped, and keeps histograms drained
/// between scrapes.
pub async fn serve(metrics: Metrics, listener: std::net::TcpListener) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    metrics.keep_up();
    let permits = std::sync::Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("metrics: too many scrapers at once; closing one");
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(TIMEOUT, answer(stream, &metrics)).await {
                tracing::debug!(error = %e, "metrics: a scraper took too long");
            }
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
        if head.len() > MAX_HEAD {
            let refusal = status(431, "Request Header Fields Too Large");
            return send(stream, &refusal).await;
        }
    }
    let response = match route(&head) {
        Route::Metrics => {
            let metrics = metrics.clone();
            match tokio::task::spawn_blocking(move || metrics.render()).await {
                Ok(text) => ok(text),
                Err(_) => status(500, "Internal Server Error"),
            }
        }
        Route::NotFound => status(404, "Not Found"),
        Route::NotAllowed => status(405, "Method Not Allowed"),
        Route::Bad => status(400, "Bad Request"),
    };
    send(stream, &response).await;
}

/// Writes `response` and closes. What the scraper sent past its head is read and dropped
/// (a little of it), so that closing with it unread does not reset the connection before
/// the scraper has read the answer.
async fn send(mut stream: TcpStream, response: &[u8]) {
    if stream.write_all(response).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let mut rest = [0u8; 4096];
    let mut dropped = 0;
    while dropped < 16 * MAX_HEAD {
        match stream.read(&mut rest).await {
            Ok(0) | Err(_) => return,
            Ok(n) => dropped += n,
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    NotAllowed,
    Bad,
}

fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Route::Bad;
    };
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::Bad;
    }
    // A query string (Prometheus sends none, people paste some) does not change the page.
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::NotAllowed,
        _ => Route::NotFound,
    }
}

fn ok(body: String) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    response
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}: this endpoint serves GET /metrics only\n");
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /metrics SPDY/3\r\n\r\n"), Route::Bad);
        assert_eq!(route(b"\r\n\r\n"), Route::Bad);
    }

    async fn get(address: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn a_scrape_gets_the_series_and_anything_else_a_clear_refusal() {
        let metrics = Metrics::on();
        metrics
            .counter("lockbox_probe_total", "Probes.", &[])
            .increment(2);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(metrics, listener));
        let answer = get(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
        assert!(answer.contains("\nlockbox_probe_total 2\n"), "{answer}");
        let answer = get(address, b"GET /secrets HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        // A head that never ends is cut off, not buffered.
        let answer = get(address, &vec![b'A'; MAX_HEAD + 2048]).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        server.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn silent_scrapers_are_closed_and_do_not_hold_the_endpoint() {
        let metrics = Metrics::on();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(metrics, listener));
        let mut silent = Vec::new();
        for _ in 0..MAX_SCRAPERS {
            silent.push(TcpStream::connect(address).await.unwrap());
        }
        // Every seat is held: one more connection is closed unanswered (reset, as it sent a
        // request that was never read).
        let mut extra = TcpStream::connect(address).await.unwrap();
        extra
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = extra.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
        let mut byte = [0u8; 1];
        // The silent ones time out and give their seats back.
        for mut s in silent {
            assert_eq!(s.read(&mut byte).await.unwrap(), 0);
        }
        let answer = get(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        server.abort();
    }
}
