//! The process's own figures, under the names every Prometheus client library gives them
//! (`process_…`), so the usual dashboards and rules find them: resident memory, open and
//! allowed descriptors, CPU time and start time, read from `/proc` at each scrape.

use super::Metrics;

/// Registers the process gauges of `metrics` and their collector.
pub(super) fn collect_with(metrics: &Metrics) {
    let rss = metrics.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &[],
    );
    let fds = metrics.gauge("process_open_fds", "Number of open file descriptors.", &[]);
    let max_fds = metrics.gauge(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        &[],
    );
    let cpu = metrics.gauge(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        &[],
    );
    let start = metrics.gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        &[],
    );
    let started = start_time();
    let page = rustix::param::page_size() as f64;
    metrics.on_scrape(move || {
        if let Some(at) = started {
            start.set(at);
        }
        if let Some(pages) = resident_pages() {
            rss.set(pages as f64 * page);
        }
        if let Ok(open) = std::fs::read_dir("/proc/self/fd") {
            fds.set(open.count() as f64);
        }
        if let Some(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).current {
            max_fds.set(limit as f64);
        }
        if let Some(seconds) = stat_fields().and_then(|f| cpu_seconds(&f)) {
            cpu.set(seconds);
        }
    });
}

/// Resident pages, the second field of `/proc/self/statm`.
fn resident_pages() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces), so that
/// field N of proc(5) is at index N - 3.
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    Some(after_name.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime (fields 14 and 15), in seconds.
fn cpu_seconds(fields: &[String]) -> Option<f64> {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks)
}

/// Boot time (`btime` of `/proc/stat`) plus the process's start (field 22), in seconds.
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let started: u64 = stat_fields()?.get(22 - 3)?.parse().ok()?;
    Some(boot as f64 + started as f64 / rustix::param::clock_ticks_per_second() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_started_recently_and_has_used_some_cpu() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = start_time().unwrap();
        // Boot time is whole seconds; the test runner started before this test.
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(cpu_seconds(&stat_fields().unwrap()).unwrap() >= 0.0);
        assert!(resident_pages().unwrap() > 0);
    }
}
