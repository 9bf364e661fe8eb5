//! `lockbox-bench`: a load generator for lockbox's servers.
//!
//! `lockbox-bench kms-decrypt` drives a running `lockbox-kms`: it creates a key (the caller
//! must be `kms.admin`, as the user who ran `init` is), grants itself
//! `kms.keys.encrypterDecrypter`, encrypts a 32-byte data key and then decrypts it from
//! `--connections` connections with `--in-flight` requests outstanding on each, for
//! `--duration`. It prints throughput and latency percentiles as a table, or JSON.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use lockbox_client::KmsClient;
use lockbox_client::proto::kms::{
    AccessBinding, AccessBindingAction, AccessBindingDelta, CreateSymmetricKey, ResourceRef,
    SymmetricAlgorithm,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    KmsDecrypt(LoadArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Socket of lockbox-kms.
    #[arg(long, env = "LOCKBOX_KMS_SOCKET", default_value = lockbox_client::DEFAULT_KMS_SOCKET)]
    socket: PathBuf,
    /// Connections to open.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests outstanding on each connection.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// How long to measure, after a warm-up of a tenth of it.
    #[arg(long, default_value = "5s", value_parser = humantime_duration)]
    duration: Duration,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Client runtime worker threads (default: one per core).
    #[arg(long)]
    client_threads: Option<usize>,
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a duration in seconds like 5s"))?;
    Ok(Duration::from_secs_f64(secs))
}

/// One run's results.
#[derive(Debug, Serialize)]
struct Report {
    workload: &'static str,
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
    let Workload::KmsDecrypt(args) = cli.workload;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.client_threads {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    let report = runtime.block_on(kms_decrypt(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{:<12} {:>5} conn x {:>3} in flight: {:>10.0} ops/s  p50 {:>7.1} us  p99 {:>7.1} us  p99.9 {:>7.1} us  errors {}",
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

async fn kms_decrypt(args: &LoadArgs) -> Result<Report> {
    let admin = KmsClient::connect(&args.socket)
        .await
        .context("connecting to lockbox-kms")?;
    let me = admin.subject().to_owned();
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
                    subject: me,
                },
            }],
        )
        .await?;
    let ciphertext = admin
        .encrypt(&key.id, None, b"lockbox-bench", &[42u8; 32])
        .await?
        .ciphertext;
    let check = admin
        .decrypt(&key.id, b"lockbox-bench", &ciphertext)
        .await?;
    anyhow::ensure!(
        check.plaintext.expose() == [42u8; 32],
        "the KMS decrypted the data key to something else"
    );

    let mut clients = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        clients.push(KmsClient::connect(&args.socket).await?);
    }
    let warmup = args.duration / 10;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + args.duration;
    let mut tasks = Vec::new();
    for client in &clients {
        for _ in 0..args.in_flight {
            let client = client.clone();
            let key_id = key.id.clone();
            let ciphertext = ciphertext.clone();
            tasks.push(tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3)
                    .unwrap_or_else(|_| unreachable!("3 significant figures is valid"));
                let mut errors = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = client
                        .decrypt(&key_id, b"lockbox-bench", &ciphertext)
                        .await
                        .is_ok();
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
    let seconds = args.duration.as_secs_f64();
    let requests = hist.len();
    admin.delete_symmetric_key(&key.id).await?;
    Ok(Report {
        workload: "kms-decrypt",
        connections: args.connections,
        in_flight_per_connection: args.in_flight,
        seconds,
        requests,
        errors,
        ops_per_second: requests as f64 / seconds,
        p50_us: hist.value_at_quantile(0.50) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
        p999_us: hist.value_at_quantile(0.999) as f64 / 1000.0,
    })
}
