//! Field validation for Lockbox, each failure naming the field.

use crate::error::LockboxError;
use std::collections::BTreeMap;

/// Longest secret name.
pub const MAX_NAME: usize = 100;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most labels.
pub const MAX_LABELS: usize = 64;
/// Longest label key or value.
pub const MAX_LABEL_PART: usize = 63;
/// Longest entry key.
pub const MAX_ENTRY_KEY: usize = 256;
/// Longest cloud or folder name.
pub const MAX_RESOURCE_NAME: usize = 63;
/// Pending period before a version is destroyed, when the request gives none: seven days.
pub const DEFAULT_PENDING_PERIOD: u64 = 7 * 24 * 3600;
/// Largest page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when unset.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

fn invalid(msg: String) -> LockboxError {
    LockboxError::InvalidArgument(msg)
}

/// A secret name: empty, or at most 100 of `[-_.a-zA-Z0-9]` starting with a letter or digit.
pub fn secret_name(value: &str) -> Result<(), LockboxError> {
    if value.is_empty() {
        return Ok(());
    }
    let first_ok = value
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    if value.len() > MAX_NAME
        || !first_ok
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(invalid(format!(
            "name: must be at most {MAX_NAME} characters of [-_.a-zA-Z0-9] starting with a letter or digit, got {value:?}"
        )));
    }
    Ok(())
}

/// A cloud or folder name: 1 to 63 of `[a-z][-a-z0-9]*`.
pub fn resource_name(value: &str) -> Result<(), LockboxError> {
    let first_ok = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if value.len() > MAX_RESOURCE_NAME
        || !first_ok
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(format!(
            "name: must be 1 to {MAX_RESOURCE_NAME} characters of [a-z][-a-z0-9]*, got {value:?}"
        )));
    }
    Ok(())
}

/// A description: at most 1024 characters.
pub fn description(field: &str, value: &str) -> Result<(), LockboxError> {
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(format!(
            "{field}: must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// Labels: at most 64, keys `[a-z][-_0-9a-z]*` and values `[-_0-9a-z]*`, at most 63 each.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), LockboxError> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!(
            "labels: at most {MAX_LABELS} labels, got {}",
            labels.len()
        )));
    }
    let chars_ok = |s: &str| {
        s.len() <= MAX_LABEL_PART
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    for (k, v) in labels {
        if !k.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) || !chars_ok(k) {
            return Err(invalid(format!(
                "labels: key {k:?} must be 1 to {MAX_LABEL_PART} characters of [a-z][-_0-9a-z]*"
            )));
        }
        if !chars_ok(v) {
            return Err(invalid(format!(
                "labels: value of {k:?} must be at most {MAX_LABEL_PART} characters of [-_0-9a-z]*"
            )));
        }
    }
    Ok(())
}

/// An entry key: 1 to 256 of `[-_./\\@0-9a-zA-Z]`.
pub fn entry_key(value: &str) -> Result<(), LockboxError> {
    if value.is_empty()
        || value.len() > MAX_ENTRY_KEY
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./\\@".contains(&b))
    {
        return Err(invalid(format!(
            "payload_entries.key: must be 1 to {MAX_ENTRY_KEY} characters of [-_./\\\\@0-9a-zA-Z], got {value:?}"
        )));
    }
    Ok(())
}

/// An id of the given kind.
pub fn id(field: &str, value: &str) -> Result<(), LockboxError> {
    if !super::ids::looks_like_id(value) {
        return Err(invalid(format!("{field}: {value:?} is not a valid id")));
    }
    Ok(())
}

/// A KMS key id: the KMS's own id shape (20 characters of `[0-9a-v]`).
pub fn kms_key_id(value: &str) -> Result<(), LockboxError> {
    if value.len() != 20
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
    {
        return Err(invalid(format!(
            "kms_key_id: {value:?} is not a valid KMS key id"
        )));
    }
    Ok(())
}

/// A page size: 0 means 100; above 1000 is refused.
pub fn page_size(value: u32) -> Result<usize, LockboxError> {
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "page_size: must be at most {MAX_PAGE_SIZE}, got {n}"
        ))),
        n => Ok(n as usize),
    }
}

/// A page token: empty, or an id from a previous page.
pub fn page_token(value: &str) -> Result<(), LockboxError> {
    if value.is_empty() || super::ids::looks_like_id(value) {
        Ok(())
    } else {
        Err(invalid("page_token: not a token from this list".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        assert!(secret_name("").is_ok());
        assert!(secret_name("db.password-1_A").is_ok());
        assert!(secret_name("-x").is_err());
        assert!(secret_name(&"a".repeat(101)).is_err());
        assert!(entry_key("a/b\\c@d.e-f_g").is_ok());
        assert!(entry_key("").is_err());
        assert!(entry_key("sp ace").is_err());
        assert!(entry_key(&"k".repeat(257)).is_err());
        assert!(resource_name("prod-1").is_ok());
        assert!(resource_name("Prod").is_err());
    }

    #[test]
    fn label_rules_follow_lockbox() {
        let ok: BTreeMap<_, _> = [("env".to_string(), "prod_1".to_string())].into();
        assert!(labels(&ok).is_ok());
        let dotted: BTreeMap<_, _> = [("a.b".to_string(), String::new())].into();
        assert!(labels(&dotted).is_err());
    }
}
