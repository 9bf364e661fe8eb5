//! Reading inputs from files or stdin and writing binary outputs.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// An argument the CLI itself rejects, reported like the server's `INVALID_ARGUMENT`.
pub(crate) fn invalid(message: impl Into<String>) -> anyhow::Error {
    lockbox_client::CallError::Server(lockbox_client::proto::Error::new(
        lockbox_client::proto::ErrorCode::InvalidArgument,
        message,
    ))
    .into()
}

/// Reads a whole file, or stdin for `-`.
pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Writes bytes to a file (mode 0600: outputs may be plaintexts), or stdout for `-`.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Parses `k1=v1,k2=v2` labels.
pub(crate) fn parse_labels(text: &str) -> Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(invalid(format!("--labels: {pair:?} is not key=value")));
        };
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// Parses a duration such as `24h`, `7d` or `3600s` into seconds.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    humantime::parse_duration(text)
        .map(|d| d.as_secs())
        .map_err(|e| format!("{text:?} is not a duration like 24h or 7d: {e}"))
}

/// Decodes hex (for `--hash`).
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let text = text.trim();
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!("--hash: {text:?} is not a hex string")));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| invalid(e.to_string())))
        .collect()
}
