//! Reading a process's Prometheus endpoint as Prometheus does: the address it logged, one
//! `GET /metrics`, and the samples of the text format.

use crate::{Daemon, Kms, KmsOptions};
use std::io::{Read, Write};
use std::net::TcpStream;

/// The `[metrics]` section that turns a process's endpoint on, on a port of its choosing.
pub const ON: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A KMS and a lockboxd, both started with metrics on; lockboxd's configuration is
/// `daemon_config` then its `[metrics]` section with `metrics_extra`.
pub fn measured(daemon_config: &str, metrics_extra: &str) -> (Kms, Daemon) {
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        config: ON.into(),
        ..KmsOptions::default()
    });
    kms.start();
    let mut daemon = Daemon::new(&kms, &format!("{daemon_config}{ON}{metrics_extra}"));
    daemon.start();
    (kms, daemon)
}

/// The `host:port` a process logged it serves metrics on.
pub fn address(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("metrics served on http://"))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let url = &line[line.find("http://").unwrap() + "http://".len()..];
    url.split('/').next().unwrap().to_owned()
}

/// One scrape of `address`: the status line and the body.
pub fn get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The text of a successful scrape of `address`.
pub fn metrics(address: &str) -> String {
    let (status, body) = get(address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    body
}

/// The value of the sample written exactly `series` (name and labels, as rendered), if any.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of `name` whose labels include all of `labels` (`key="value"`).
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && labels.iter().all(|k| rest.contains(k)))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}
