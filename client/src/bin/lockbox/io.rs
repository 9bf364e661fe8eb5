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

/// `e` with what the CLI was doing, and what to do about it, in front of its message; its
/// code stays.
pub(crate) fn explained(e: lockbox_client::CallError, doing: &str) -> anyhow::Error {
    let code = lockbox_client::error_code(&e);
    let message = match &e {
        lockbox_client::CallError::Server(answer) => answer.message.clone(),
        other => other.to_string(),
    };
    lockbox_client::CallError::Server(lockbox_client::proto::Error::new(
        code,
        format!("{doing}: {message}"),
    ))
    .into()
}

/// The most the CLI reads from a payload file or stdin: the largest frame a server accepts,
/// which no valid payload's JSON exceeds.
pub(crate) const MAX_PAYLOAD_INPUT: usize =
    lockbox_client::proto::frame::DEFAULT_MAX_FRAME as usize;

/// The most the CLI reads for a KMS input (a plaintext, a ciphertext as raw bytes or base64,
/// a message to sign): well above the largest the KMS accepts.
pub(crate) const MAX_KMS_INPUT: usize = 4 * lockbox_client::proto::kms::MAX_PLAINTEXT;

/// Reads a whole file, or stdin for `-`, refusing one longer than `limit` bytes (with
/// RESOURCE_EXHAUSTED, before reading further): `/dev/urandom` or a wrong file ends with an
/// error, not with the CLI's memory. The bytes may be secrets, so every buffer they pass
/// through is wiped.
pub(crate) fn read_input(path: &Path, limit: usize) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut buf = zeroize::Zeroizing::new(Vec::with_capacity(limit.min(64 * 1024) + 1));
    let mut chunk = zeroize::Zeroizing::new(vec![0u8; 64 * 1024]);
    let (name, mut input): (String, Box<dyn Read>) = if path == Path::new("-") {
        ("stdin".into(), Box::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        (path.display().to_string(), Box::new(file))
    };
    loop {
        let n = match input.read(&mut chunk[..]) {
            Ok(0) => return Ok(buf),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {name}")),
        };
        if buf.len() + n > limit {
            return Err(
                lockbox_client::CallError::Server(lockbox_client::proto::Error::new(
                    lockbox_client::proto::ErrorCode::ResourceExhausted,
                    format!("{name}: more than {limit} bytes, the most this input may hold"),
                ))
                .into(),
            );
        }
        if buf.capacity() < buf.len() + n {
            // Grow by hand so the old allocation is wiped, not freed as it was.
            let mut grown =
                zeroize::Zeroizing::new(Vec::with_capacity((2 * buf.capacity()).min(limit) + n));
            grown.extend_from_slice(&buf);
            buf = grown;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes bytes to a file (mode 0600: outputs may be plaintexts or private keys), or stdout
/// for `-`. The file is written whole under a new name beside it, never through an existing
/// file or symlink (whose mode or target someone else chose), synced, and renamed into place.
pub(crate) fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| invalid(format!("{}: not a file name", path.display())))?;
    let mut temporary = name.to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
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
