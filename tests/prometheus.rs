//! A real Prometheus (Debian's `prometheus` package, which `scripts/test` installs) scraping
//! both processes: the shipped scrape configuration and rules pass `promtool`, the rules
//! load, and the quota, request and KMS series arrive with the values the traffic made.
//! And every series the shipped dashboard and rules query exists in a real scrape.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_tests::payload::{secret, set};
use lockbox_tests::scrape::{self, measured};
use lockbox_tests::{json, kms_key_with, my_subject};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The repository's `deploy/`.
fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// A program of the `prometheus` package, which the test command installs.
fn prometheus_tool(name: &str) -> Command {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's prometheus package (scripts/test does)",
        path.display()
    );
    Command::new(path)
}

/// Runs `command`, which must succeed; returns its stdout.
fn run(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A free loopback port (free when asked: Prometheus binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prometheus on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    address: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `lockboxd` and `kms` every second, with the
    /// shipped rules.
    fn start(dir: &Path, lockboxd: &str, kms: &str) -> Self {
        std::fs::copy(
            deploy("prometheus/lockbox.rules.yml"),
            dir.join("lockbox.rules.yml"),
        )
        .unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - lockbox.rules.yml\n\
                 scrape_configs:\n\
                 \x20 - job_name: lockboxd\n    static_configs:\n      - targets: [\"{lockboxd}\"]\n\
                 \x20 - job_name: lockbox-kms\n    static_configs:\n      - targets: [\"{kms}\"]\n"
            ),
        )
        .unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let child = prometheus_tool("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdout(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .unwrap();
        Self { child, address }
    }

    /// `path` of the HTTP API with `query` as its query parameter.
    fn api(&self, path: &str, query: &str) -> Value {
        let out = Command::new("curl")
            .args(["-sfG", "--max-time", "5", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(format!("http://{}{path}", self.address))
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The value of the one series `query` selects, once Prometheus has it (within a minute:
    /// it scrapes every second, and starts in a few).
    fn value(&self, query: &str, wanted: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.api("/api/v1/query", query);
            let value = last["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok());
            if let Some(v) = value
                && wanted(v)
                && last["data"]["result"].as_array().map(Vec::len) == Some(1)
            {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus never had the wanted value of {query}: {last}");
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_quotas_requests_and_the_kms() {
    run({
        let mut c = prometheus_tool("promtool");
        c.args(["check", "config"])
            .arg(deploy("prometheus/prometheus.yml"));
        c
    });
    run({
        let mut c = prometheus_tool("promtool");
        c.args(["check", "rules"])
            .arg(deploy("prometheus/lockbox.rules.yml"));
        c
    });

    let (kms, daemon) = measured("[limits]\nsecrets_per_cloud = 4\n", "");
    let c = daemon.client().await;
    let key = kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", &my_subject())],
    )
    .await;
    let plain = c
        .create_secret(secret("plain", vec![set("k", "v")]))
        .await
        .unwrap()
        .resource_id;
    let mut keyed = secret("keyed", vec![set("k", "v")]);
    keyed.kms_key_id = key.clone();
    let keyed = c.create_secret(keyed).await.unwrap().resource_id;
    for _ in 0..7 {
        c.get_payload(&plain, None).await.unwrap();
    }
    for _ in 0..3 {
        c.get_payload(&keyed, None).await.unwrap();
    }
    let cloud = json(&daemon.run(["--format", "json", "quota", "list"]))["cloud_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let lockboxd_address = scrape::address(&daemon.log());
    let kms_address = scrape::address(&kms.log());
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), &lockboxd_address, &kms_address);

    assert_eq!(prometheus.value("up{job=\"lockboxd\"}", |v| v == 1.0), 1.0);
    assert_eq!(
        prometheus.value("up{job=\"lockbox-kms\"}", |v| v == 1.0),
        1.0
    );
    let quota = |kind: &str| {
        format!("lockbox_quota_{kind}{{quota=\"lockbox.secrets.count\",cloud=\"{cloud}\"}}")
    };
    assert_eq!(prometheus.value(&quota("usage"), |v| v > 0.0), 2.0);
    assert_eq!(prometheus.value(&quota("limit"), |v| v > 0.0), 4.0);
    // Half the quota: the 80% alert's expression sees 0.5.
    let share = format!(
        "{} / on (instance, job, quota, cloud) {}",
        quota("usage"),
        quota("limit")
    );
    assert_eq!(prometheus.value(&share, |v| v > 0.0), 0.5);
    assert_eq!(
        prometheus.value(
            "lockbox_requests_total{method=\"GetPayload\",code=\"OK\"}",
            |v| v > 0.0
        ),
        10.0
    );
    assert_eq!(
        prometheus.value("sum(lockbox_payload_reads_total{code=\"OK\"})", |v| v > 0.0),
        10.0
    );
    assert_eq!(
        prometheus.value(
            &format!(
                "lockbox_kms_operations_total{{operation=\"Decrypt\",key=\"{key}\",code=\"OK\"}}"
            ),
            |v| v > 0.0
        ),
        3.0
    );
    assert_eq!(prometheus.value("lockbox_kms_client_up", |v| v == 1.0), 1.0);
    // The recording rule of the shipped rules runs.
    prometheus.value("lockbox:payload_operations:rate5m", |v| v >= 0.0);
    let rules = prometheus.api("/api/v1/rules", "");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{rules}");
    for rule in groups[0]["rules"].as_array().unwrap() {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
}

/// The metric names `text` (a dashboard's or the rules' queries) uses.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = ["lockbox_", "process_"]
        .iter()
        .filter_map(|p| rest.find(p))
        .min()
    {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // Part of a longer word (a recording rule's name) is not a metric.
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(&word);
            names.insert(family.to_owned());
        }
        rest = &rest[at + word.len().max(1)..];
    }
    names
}

#[tokio::test]
async fn every_series_the_dashboard_and_the_rules_query_is_in_a_real_scrape() {
    let dashboard = std::fs::read_to_string(deploy("grafana/lockbox.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queries = String::new();
    for panel in parsed["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push_str(target["expr"].as_str().unwrap());
            queries.push('\n');
        }
    }
    queries.push_str(&std::fs::read_to_string(deploy("prometheus/lockbox.rules.yml")).unwrap());
    let wanted = names_in(&queries);
    assert!(wanted.contains("lockbox_quota_usage"), "{wanted:?}");
    assert!(
        wanted.contains("lockbox_request_duration_seconds"),
        "{wanted:?}"
    );

    let (kms, daemon) = measured("", "");
    let c = daemon.client().await;
    let key = kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", &my_subject())],
    )
    .await;
    let mut keyed = secret("keyed", vec![set("k", "v")]);
    keyed.kms_key_id = key;
    let id = c.create_secret(keyed).await.unwrap().resource_id;
    c.get_payload(&id, None).await.unwrap();

    let scraped = format!(
        "{}{}",
        scrape::metrics(&scrape::address(&daemon.log())),
        scrape::metrics(&scrape::address(&kms.log()))
    );
    let families: BTreeSet<&str> = scraped
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let missing: Vec<_> = wanted
        .iter()
        .filter(|n| !families.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not in a scrape: {missing:?}\n{scraped}"
    );
}
