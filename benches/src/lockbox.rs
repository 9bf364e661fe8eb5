//! The lockboxd workloads: a data set the tool creates itself (or finds from an earlier run)
//! and a weighted mix of the calls a secrets client makes.

use crate::{Load, Report, lockbox_clients, run};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use lockbox_client::LockboxClient;
use lockbox_client::proto::SecretBytes;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::{AddVersion, CreateSecret, PayloadEntryChange, PayloadValue};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The data set and the mix.
#[derive(Args, Clone)]
pub(crate) struct Workload {
    /// Weighted calls, e.g. `payload-get=90,add-version=10`. Calls: payload-get (by id),
    /// payload-get-ex (by folder and name), secret-get, list (one page of 100 after a
    /// random secret), add-version.
    #[arg(long, default_value = "payload-get=1", value_parser = parse_mix)]
    pub(crate) mix: Mix,
    /// Secrets in the data set; each call picks one at random.
    #[arg(long, default_value_t = 1)]
    pub(crate) secrets: usize,
    /// Entries in each version's payload.
    #[arg(long, default_value_t = 1)]
    pub(crate) entries: usize,
    /// Bytes in each entry's value.
    #[arg(long, default_value_t = 64)]
    pub(crate) value_size: usize,
    /// Wrap the data keys with a KMS key of their own (a KMS round trip per payload read).
    #[arg(long)]
    pub(crate) kms_key: bool,
    /// Where `list` starts: after a random secret, or at the start or end of the folder.
    #[arg(long, default_value = "random", value_parser = ["random", "start", "end"])]
    pub(crate) list_at: String,
    /// Each connection works on its own secret (connection i on secret i) instead of random
    /// ones; needs --secrets at least --connections.
    #[arg(long)]
    pub(crate) per_connection: bool,
    /// Before measuring, put this many bindings on the data set's folder: the bench user's
    /// lockbox.admin and others' lockbox.auditor, so every call is authorized through a
    /// folder carrying that many bindings.
    #[arg(long, default_value_t = 0)]
    pub(crate) folder_bindings: usize,
}

/// A call of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    PayloadGet,
    PayloadGetEx,
    SecretGet,
    List,
    AddVersion,
}

/// Calls with their weights.
#[derive(Debug, Clone)]
pub(crate) struct Mix(Vec<(Call, u32)>);

impl Mix {
    /// The call for a uniform random number.
    fn pick(&self, random: u64) -> Call {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut at = random % total.max(1);
        for (call, weight) in &self.0 {
            if at < u64::from(*weight) {
                return *call;
            }
            at -= u64::from(*weight);
        }
        self.0[0].0
    }

    /// A short name for reports: the calls and weights.
    pub(crate) fn name(&self) -> String {
        if let [(call, _)] = self.0.as_slice() {
            return call_name(*call).to_owned();
        }
        self.0
            .iter()
            .map(|(c, w)| format!("{}={w}", call_name(*c)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn has(&self, call: Call) -> bool {
        self.0.iter().any(|(c, _)| *c == call)
    }
}

fn call_name(call: Call) -> &'static str {
    match call {
        Call::PayloadGet => "payload-get",
        Call::PayloadGetEx => "payload-get-ex",
        Call::SecretGet => "secret-get",
        Call::List => "list",
        Call::AddVersion => "add-version",
    }
}

fn parse_mix(text: &str) -> Result<Mix, String> {
    let mut calls = Vec::new();
    for part in text.split(',') {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let call = match name.trim() {
            "payload-get" => Call::PayloadGet,
            "payload-get-ex" => Call::PayloadGetEx,
            "secret-get" => Call::SecretGet,
            "list" => Call::List,
            "add-version" => Call::AddVersion,
            other => return Err(format!("unknown call {other:?}")),
        };
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("weight of {name} is not a number: {weight:?}"))?;
        if weight > 0 {
            calls.push((call, weight));
        }
    }
    if calls.is_empty() {
        return Err("the mix has no call with a weight above 0".into());
    }
    Ok(Mix(calls))
}

/// A 64-bit mix of a counter (splitmix64): cheap, well spread, reproducible.
pub(crate) fn spread(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn entries(n: usize, value_size: usize, version: u64) -> Vec<PayloadEntryChange> {
    (0..n)
        .map(|i| {
            let mut value = vec![b'x'; value_size];
            // Distinct values per version, so a read of the wrong version would show.
            for (b, d) in value.iter_mut().zip(version.to_string().bytes()) {
                *b = d;
            }
            PayloadEntryChange {
                key: format!("k{i}"),
                value: Some(PayloadValue::Text(SecretBytes::new(value))),
            }
        })
        .collect()
}

/// The secrets a run works on.
pub(crate) struct DataSet {
    pub(crate) folder_id: String,
    /// Ids and names, in creation (listing) order.
    pub(crate) secrets: Vec<(String, String)>,
}

/// Finds the data set of these dimensions from an earlier run, or creates it: a folder
/// named after the dimensions in the default cloud, with secrets `s<i>`.
pub(crate) async fn data_set(load: &Load, w: &Workload, kms_key_id: &str) -> Result<DataSet> {
    let admin = LockboxClient::connect(&load.socket)
        .await
        .context("connecting to lockboxd")?;
    let folder_name = format!(
        "bench-n{}-e{}-v{}{}",
        w.secrets,
        w.entries,
        w.value_size,
        if w.kms_key { "-kms" } else { "" }
    );
    let (folders, _) = admin
        .list_folders(
            "",
            Page {
                page_size: 1000,
                page_token: String::new(),
            },
        )
        .await?;
    let folder_id = match folders.iter().find(|f| f.name == folder_name) {
        Some(f) => f.id.clone(),
        None => {
            admin
                .create_folder("", &folder_name, "created by lockbox-bench")
                .await?
                .resource_id
        }
    };
    let mut secrets = list_all(&admin, &folder_id).await?;
    if secrets.len() < w.secrets {
        let have = secrets.len();
        eprintln!(
            "lockbox-bench: creating {} secrets in folder {folder_name}",
            w.secrets - have
        );
        create_secrets(load, w, &folder_id, kms_key_id, have..w.secrets).await?;
        secrets = list_all(&admin, &folder_id).await?;
    }
    ensure!(
        secrets.len() >= w.secrets,
        "folder {folder_name} holds {} secrets, not {}",
        secrets.len(),
        w.secrets
    );
    secrets.truncate(w.secrets);
    // Every read is checked against what was written, once, before measuring.
    let (id, name) = &secrets[0];
    let payload = admin.get_payload(id, None).await?;
    ensure!(
        payload.len() == w.entries,
        "secret {name} has {} entries, not {}",
        payload.len(),
        w.entries
    );
    Ok(DataSet { folder_id, secrets })
}

async fn list_all(client: &LockboxClient, folder_id: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = client
            .list_secrets(
                folder_id,
                Page {
                    page_size: 1000,
                    page_token: token,
                },
            )
            .await?;
        out.extend(page.into_iter().map(|s| (s.id, s.name)));
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

async fn create_secrets(
    load: &Load,
    w: &Workload,
    folder_id: &str,
    kms_key_id: &str,
    range: std::ops::Range<usize>,
) -> Result<()> {
    let next = Arc::new(AtomicU64::new(range.start as u64));
    let end = range.end as u64;
    let mut tasks = Vec::new();
    for client in lockbox_clients(&load.socket, load.connections.max(16)).await? {
        let (next, folder_id, kms_key_id) =
            (next.clone(), folder_id.to_owned(), kms_key_id.to_owned());
        let (n, size) = (w.entries, w.value_size);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, anyhow::Error>(());
                }
                client
                    .create_secret(CreateSecret {
                        folder_id: folder_id.clone(),
                        name: format!("s{i:09}"),
                        description: String::new(),
                        labels: BTreeMap::new(),
                        kms_key_id: kms_key_id.clone(),
                        version_description: String::new(),
                        version_payload_entries: entries(n, size, 0),
                        deletion_protection: false,
                        password_payload_specification: None,
                    })
                    .await
                    .with_context(|| format!("creating secret s{i:09}"))?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs the mix over the data set.
pub(crate) async fn mix(load: &Load, w: &Workload, kms_key_id: &str) -> Result<Report> {
    if w.secrets == 0 {
        bail!("--secrets must be at least 1");
    }
    ensure!(
        !w.per_connection || w.secrets >= load.connections,
        "--per-connection needs --secrets at least --connections"
    );
    let set = Arc::new(data_set(load, w, kms_key_id).await?);
    if w.folder_bindings > 0 {
        folder_bindings(load, &set.folder_id, w.folder_bindings).await?;
    }
    let clients: Vec<(LockboxClient, usize)> = lockbox_clients(&load.socket, load.connections)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, i))
        .collect();
    let per_connection = w.per_connection;
    let counter = Arc::new(AtomicU64::new(0));
    let mix = w.mix.clone();
    let (n, size) = (w.entries, w.value_size);
    // Shared, not cloned per request: the load loop itself should not allocate.
    let list_at: Arc<str> = w.list_at.as_str().into();
    let name = format!("{}{}", mix.name(), if w.kms_key { "-kms-key" } else { "" });
    if mix.has(Call::AddVersion) {
        eprintln!("lockbox-bench: add-version writes new versions to the data set's secrets");
    }
    run(
        &name,
        load,
        clients,
        move |(c, connection): (LockboxClient, usize)| {
            let r = spread(counter.fetch_add(1, Ordering::Relaxed));
            let (set, call) = (set.clone(), mix.pick(r));
            let list_at = list_at.clone();
            async move {
                let index = if per_connection {
                    connection
                } else {
                    ((r >> 32) % set.secrets.len() as u64) as usize
                };
                let (id, name) = &set.secrets[index];
                match call {
                    Call::PayloadGet => c.get_payload(id, None).await.is_ok(),
                    Call::PayloadGetEx => c
                        .get_payload_by_name(&set.folder_id, name, None)
                        .await
                        .is_ok(),
                    Call::SecretGet => c.get_secret(id).await.is_ok(),
                    Call::List => {
                        let page_token = match &*list_at {
                            "start" => String::new(),
                            "end" => {
                                let at = set.secrets.len().saturating_sub(101);
                                set.secrets.get(at).map(|s| s.0.clone()).unwrap_or_default()
                            }
                            _ => id.clone(),
                        };
                        c.list_secrets(
                            &set.folder_id,
                            Page {
                                page_size: 100,
                                page_token,
                            },
                        )
                        .await
                        .is_ok()
                    }
                    Call::AddVersion => c
                        .add_version(AddVersion {
                            secret_id: id.clone(),
                            description: String::new(),
                            payload_entries: entries(n, size, r),
                            base_version_id: None,
                        })
                        .await
                        .is_ok(),
                }
            }
        },
    )
    .await
}

/// Puts `n` bindings on `folder_id`, the caller's own lockbox.admin among them.
async fn folder_bindings(load: &Load, folder_id: &str, n: usize) -> Result<()> {
    use lockbox_client::proto::common::AccessBinding;
    use lockbox_client::proto::lockbox::LockboxResource;
    let client = LockboxClient::connect(&load.socket).await?;
    let mut bindings: Vec<AccessBinding> = (1..n)
        .map(|i| AccessBinding {
            role_id: "lockbox.auditor".into(),
            subject: format!("user:bench-{i}"),
        })
        .collect();
    bindings.push(AccessBinding {
        role_id: "lockbox.admin".into(),
        subject: client.subject().to_owned(),
    });
    client
        .set_access_bindings(LockboxResource::Folder(folder_id.to_owned()), bindings)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_by_weight() {
        let mix = parse_mix("payload-get=3,list=1").unwrap();
        let picks: Vec<Call> = (0..4).map(|r| mix.pick(r)).collect();
        assert_eq!(
            picks,
            [
                Call::PayloadGet,
                Call::PayloadGet,
                Call::PayloadGet,
                Call::List
            ]
        );
        assert_eq!(mix.name(), "payload-get=3,list=1");
        assert_eq!(parse_mix("add-version").unwrap().name(), "add-version");
        assert!(parse_mix("fetch=1").is_err());
        assert!(parse_mix("list=0").is_err());
        assert!(parse_mix("list=x").is_err());
    }
}
