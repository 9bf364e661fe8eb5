//! `lockbox-bench`: a load generator for lockbox's servers.
//!
//! Each workload sets up what it needs, then runs `--connections` connections with
//! `--in-flight` requests outstanding on each, for `--duration` (after a warm-up of a tenth
//! of it) or until `--requests` have been answered, and prints throughput and latency
//! percentiles as a table, or JSON.
//!
//! - `lockbox`: a weighted mix of payload reads by id and by name, secret reads, list pages
//!   and version additions over a data set it creates in a folder of its own (or finds from
//!   an earlier run): `--secrets`, `--entries` per version, `--value-size`; `--kms-key` wraps
//!   the data keys with a KMS key of their own, so every payload read is a KMS round trip.
//! - `kms-decrypt`: lockbox-kms decrypts a 32-byte data key. The caller must be `kms.admin`
//!   (the user who ran `init` is).
//! - `redis-get`, `redis-set`: the same loop against Redis over a Unix socket (the
//!   baseline), with this tool speaking Redis's protocol so both sides have the same client.
//! - `echo` against `lockbox-bench echo-server`: the same framing, transport and runtime as
//!   lockbox's servers with a handler that only answers (the socket limit).
//! - `work-limit`: the payload read's work in process, with no socket (the work limit).

mod echo;
mod lockbox;
mod redis;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
use lockbox_client::proto::kms::{CreateSymmetricKey, ResourceRef, SymmetricAlgorithm};
use lockbox_client::{KmsClient, LockboxClient};
use serde::Serialize;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand)]
enum Workload {
    /// Decrypt a 32-byte data key over the KMS socket.
    KmsDecrypt(Load),
    /// A mix of lockboxd calls over a data set.
    Lockbox {
        #[command(flatten)]
        load: Load,
        #[command(flatten)]
        workload: lockbox::Workload,
    },
    /// Redis GET of a value over its Unix socket.
    RedisGet {
        #[command(flatten)]
        load: Load,
        /// Redis's Unix socket.
        #[arg(long)]
        redis_socket: PathBuf,
        /// Bytes in the value.
        #[arg(long, default_value_t = 64)]
        value_size: usize,
    },
    /// Redis SET of a value over its Unix socket.
    RedisSet {
        #[command(flatten)]
        load: Load,
        /// Redis's Unix socket.
        #[arg(long)]
        redis_socket: PathBuf,
        /// Bytes in the value.
        #[arg(long, default_value_t = 64)]
        value_size: usize,
    },
    /// Empty requests to `lockbox-bench echo-server` at --socket.
    Echo(Load),
    /// Serve the echo handler on a socket until interrupted.
    EchoServer {
        /// Socket to listen on.
        #[arg(long)]
        socket: PathBuf,
    },
    /// The payload read's work in process: RocksDB get, data key unwrap, AES-GCM open.
    WorkLimit {
        /// Threads reading at once (default: every CPU).
        #[arg(long)]
        threads: Option<usize>,
        /// Bytes in the entry's value.
        #[arg(long, default_value_t = 64)]
        value_size: usize,
        /// How long to measure, in seconds.
        #[arg(long, default_value = "5s", value_parser = seconds)]
        duration: Duration,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Load {
    /// Socket of lockbox-kms.
    #[arg(long, env = "LOCKBOX_KMS_SOCKET", default_value = lockbox_client::DEFAULT_KMS_SOCKET)]
    kms_socket: PathBuf,
    /// Socket of lockboxd.
    #[arg(long, env = "LOCKBOX_SOCKET", default_value = lockbox_client::DEFAULT_LOCKBOX_SOCKET)]
    socket: PathBuf,
    /// Connections to open.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests outstanding on each connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// How long to measure, in seconds (e.g. 5s).
    #[arg(long, default_value = "5s", value_parser = seconds)]
    duration: Duration,
    /// Stop after this many requests instead (no warm-up).
    #[arg(long)]
    requests: Option<u64>,
    /// Runtime worker threads of this tool (default: half the CPUs, like the servers).
    #[arg(long)]
    threads: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a duration in seconds like 5s"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// One run's results.
#[derive(Debug, Serialize)]
struct Report {
    workload: String,
    connections: usize,
    in_flight_per_connection: usize,
    seconds: f64,
    requests: u64,
    errors: u64,
    ops_per_second: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.workload {
        Workload::KmsDecrypt(load) | Workload::Echo(load) => load.threads,
        Workload::Lockbox { load, .. }
        | Workload::RedisGet { load, .. }
        | Workload::RedisSet { load, .. } => load.threads,
        Workload::EchoServer { .. } | Workload::WorkLimit { .. } => None,
    };
    let runtime = lockbox_rpc::listen::runtime(threads)?;
    let (report, json) = runtime.block_on(async {
        match cli.workload {
            Workload::KmsDecrypt(load) => {
                Ok::<_, anyhow::Error>((kms_decrypt(&load).await?, load.json))
            }
            Workload::Lockbox { load, workload } => {
                let kms_key_id = if workload.kms_key {
                    let admin = KmsClient::connect(&load.kms_socket)
                        .await
                        .context("connecting to lockbox-kms")?;
                    bench_key(&admin).await?
                } else {
                    String::new()
                };
                Ok((
                    lockbox::mix(&load, &workload, &kms_key_id).await?,
                    load.json,
                ))
            }
            Workload::RedisGet {
                load,
                redis_socket,
                value_size,
            } => Ok((
                redis_load(&load, &redis_socket, value_size, false).await?,
                load.json,
            )),
            Workload::RedisSet {
                load,
                redis_socket,
                value_size,
            } => Ok((
                redis_load(&load, &redis_socket, value_size, true).await?,
                load.json,
            )),
            Workload::Echo(load) => Ok((echo_load(&load).await?, load.json)),
            Workload::EchoServer { socket } => {
                echo::run(&socket).await?;
                std::process::exit(0);
            }
            Workload::WorkLimit {
                threads,
                value_size,
                duration,
                json,
            } => {
                let threads = threads.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                });
                let ops = tokio::task::spawn_blocking(move || {
                    lockbox_benches::work::limit(value_size, threads, duration)
                })
                .await?;
                Ok((
                    Report {
                        workload: "work-limit".into(),
                        connections: 0,
                        in_flight_per_connection: threads,
                        seconds: duration.as_secs_f64(),
                        requests: (ops * duration.as_secs_f64()) as u64,
                        errors: 0,
                        ops_per_second: ops,
                        p50_us: 0.0,
                        p99_us: 0.0,
                        p999_us: 0.0,
                    },
                    json,
                ))
            }
        }
    })?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.connections == 0 {
        println!(
            "{:<20} {:>3} threads in process:   {:>9.0} ops/s",
            report.workload, report.in_flight_per_connection, report.ops_per_second
        );
    } else {
        println!(
            "{:<20} {:>3} conn x {:>3} in flight: {:>9.0} ops/s  p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  errors {}",
            report.workload,
            report.connections,
            report.in_flight_per_connection,
            report.ops_per_second,
            report.p50_us,
            report.p99_us,
            report.p999_us,
            report.errors
        );
    }
    Ok(())
}

/// Runs `op` on every connection with `in_flight` copies each, measuring after a warm-up.
async fn run<C, F, Fut>(name: &str, load: &Load, clients: Vec<C>, op: F) -> Result<Report>
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    // By count: no warm-up, every request measured, until the count is handed out.
    let warmup = if load.requests.is_some() {
        Duration::ZERO
    } else {
        load.duration / 10
    };
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + load.duration;
    let left = Arc::new(AtomicU64::new(load.requests.unwrap_or(u64::MAX)));
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..load.in_flight {
            let (client, op, left) = (client.clone(), op.clone(), left.clone());
            let by_count = load.requests.is_some();
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3)
                    .unwrap_or_else(|_| unreachable!("3 significant figures is valid"));
                let mut errors = 0u64;
                loop {
                    let t0 = Instant::now();
                    let done = if by_count {
                        left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            n.checked_sub(1)
                        })
                        .is_err()
                    } else {
                        t0 >= end
                    };
                    if done {
                        break;
                    }
                    let ok = op(client.clone()).await;
                    if t0 >= measure_from {
                        if ok {
                            let _ = hist.record(t0.elapsed().as_nanos() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (hist, errors)
            }));
        }
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        hist.add(h)?;
        errors += e;
    }
    let seconds = if load.requests.is_some() {
        start.elapsed().as_secs_f64()
    } else {
        load.duration.as_secs_f64()
    };
    Ok(Report {
        workload: name.to_owned(),
        connections: load.connections,
        in_flight_per_connection: load.in_flight,
        seconds,
        requests: hist.len(),
        errors,
        ops_per_second: hist.len() as f64 / seconds,
        p50_us: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        p999_us: hist.value_at_quantile(0.999) as f64 / 1000.0,
    })
}

/// Creates a KMS key in folder `lockbox-bench` and grants the caller encrypt and decrypt.
async fn bench_key(admin: &KmsClient) -> Result<String> {
    let key = admin
        .create_symmetric_key(CreateSymmetricKey {
            folder_id: "lockbox-bench".into(),
            name: "bench".into(),
            description: "created by lockbox-bench".into(),
            labels: BTreeMap::new(),
            default_algorithm: SymmetricAlgorithm::Aes256,
            rotation_period: None,
            deletion_protection: false,
        })
        .await
        .context("creating the bench key (the bench user must be kms.admin)")?;
    admin
        .update_access_bindings(
            ResourceRef::Key(key.id.clone()),
            vec![AccessBindingDelta {
                action: AccessBindingAction::Add,
                binding: AccessBinding {
                    role_id: "kms.keys.encrypterDecrypter".into(),
                    subject: admin.subject().to_owned(),
                },
            }],
        )
        .await?;
    Ok(key.id)
}

async fn kms_clients(socket: &Path, n: usize) -> Result<Vec<KmsClient>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(
            KmsClient::connect(socket)
                .await
                .context("connecting to lockbox-kms")?,
        );
    }
    Ok(clients)
}

async fn lockbox_clients(socket: &Path, n: usize) -> Result<Vec<LockboxClient>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(
            LockboxClient::connect(socket)
                .await
                .context("connecting to lockboxd")?,
        );
    }
    Ok(clients)
}

async fn kms_decrypt(load: &Load) -> Result<Report> {
    let admin = KmsClient::connect(&load.kms_socket)
        .await
        .context("connecting to lockbox-kms")?;
    let key_id = bench_key(&admin).await?;
    let ciphertext = admin
        .encrypt(&key_id, None, b"lockbox-bench", &[42u8; 32])
        .await?
        .ciphertext;
    let check = admin
        .decrypt(&key_id, b"lockbox-bench", &ciphertext)
        .await?;
    anyhow::ensure!(
        check.plaintext.expose() == [42u8; 32],
        "the KMS decrypted the data key to something else"
    );
    let clients = kms_clients(&load.kms_socket, load.connections).await?;
    let report = run("kms-decrypt", load, clients, move |c: KmsClient| {
        let (key_id, ciphertext) = (key_id.clone(), ciphertext.clone());
        async move {
            c.decrypt(&key_id, b"lockbox-bench", &ciphertext)
                .await
                .is_ok()
        }
    })
    .await?;
    Ok(report)
}

async fn redis_load(load: &Load, socket: &Path, value_size: usize, write: bool) -> Result<Report> {
    let value = vec![b'x'; value_size];
    let setup = redis::Redis::connect(socket).await?;
    setup.command(&[b"SET", b"lockbox-bench", &value]).await?;
    match setup.command(&[b"GET", b"lockbox-bench"]).await? {
        redis::Reply::Bulk(Some(v)) if v == value => {}
        other => anyhow::bail!("redis returned {other:?} for the value just set"),
    }
    let mut clients = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        clients.push(redis::Redis::connect(socket).await?);
    }
    let name = if write { "redis-set" } else { "redis-get" };
    // Shared, not cloned per request: the load loop itself should not allocate.
    let value: Arc<[u8]> = value.into();
    run(name, load, clients, move |c: redis::Redis| {
        let value = value.clone();
        async move {
            let reply = if write {
                c.command(&[b"SET", b"lockbox-bench", &value]).await
            } else {
                c.command(&[b"GET", b"lockbox-bench"]).await
            };
            reply.is_ok()
        }
    })
    .await
}

async fn echo_load(load: &Load) -> Result<Report> {
    use lockbox_client::proto::hello::Service;
    use lockbox_rpc::Channel;
    let mut clients = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        clients.push(Channel::connect(&load.socket, Service::Lockbox, "lockbox-bench").await?);
    }
    run("echo", load, clients, |c: Channel<()>| async move {
        c.call(None, &()).await.is_ok()
    })
    .await
}
