//! Field validation, each failure naming the field.

use crate::error::KmsError;
use std::collections::BTreeMap;

/// Longest name.
pub const MAX_NAME: usize = 100;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;
/// Most labels on one resource.
pub const MAX_LABELS: usize = 64;
/// Longest label key or value.
pub const MAX_LABEL_PART: usize = 63;
/// Longest folder id.
pub const MAX_FOLDER_ID: usize = 50;
/// Shortest pending period before a version's destruction: one day.
pub const MIN_PENDING_PERIOD: u64 = 24 * 3600;
/// Default pending period: seven days.
pub const DEFAULT_PENDING_PERIOD: u64 = 7 * 24 * 3600;
/// Shortest automatic rotation period: one day.
pub const MIN_ROTATION_PERIOD: u64 = 24 * 3600;

fn invalid(msg: String) -> KmsError {
    KmsError::InvalidArgument(msg)
}

/// A name: empty, or up to 100 characters of `[a-z][-a-z0-9]*`.
pub fn name(value: &str) -> Result<(), KmsError> {
    if value.is_empty() {
        return Ok(());
    }
    let mut bytes = value.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    if value.len() > MAX_NAME
        || !first_ok
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(format!(
            "name: must be at most {MAX_NAME} characters of [a-z][-a-z0-9]*, got {value:?}"
        )));
    }
    Ok(())
}

/// A description: at most 1024 characters.
pub fn description(value: &str) -> Result<(), KmsError> {
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(format!(
            "description: must be at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// Labels: at most 64; keys `[a-z][-_./\@0-9a-z]*` and values `[-_./\@0-9a-z]*`, each at most
/// 63 characters.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), KmsError> {
    if labels.len() > MAX_LABELS {
        return Err(invalid(format!(
            "labels: at most {MAX_LABELS} labels, got {}",
            labels.len()
        )));
    }
    let part_ok = |s: &str| {
        s.len() <= MAX_LABEL_PART
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./\\@".contains(&b))
    };
    for (k, v) in labels {
        if !k.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) || !part_ok(k) {
            return Err(invalid(format!(
                "labels: key {k:?} must be 1 to {MAX_LABEL_PART} characters of [a-z][-_./\\@0-9a-z]*"
            )));
        }
        if !part_ok(v) {
            return Err(invalid(format!(
                "labels: value of {k:?} must be at most {MAX_LABEL_PART} characters of [-_./\\@0-9a-z]*"
            )));
        }
    }
    Ok(())
}

/// A folder id: 1 to 50 characters of `[a-z0-9-]`.
pub fn folder_id(value: &str) -> Result<(), KmsError> {
    if value.is_empty()
        || value.len() > MAX_FOLDER_ID
        || !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(invalid(format!(
            "folder_id: must be 1 to {MAX_FOLDER_ID} characters of [a-z0-9-], got {value:?}"
        )));
    }
    Ok(())
}

/// A resource id this service issued.
pub fn id(field: &str, value: &str) -> Result<(), KmsError> {
    if !crate::ids::looks_like_id(value) {
        return Err(invalid(format!("{field}: {value:?} is not a valid id")));
    }
    Ok(())
}

/// A rotation period: none, or at least one day.
pub fn rotation_period(value: Option<u64>) -> Result<(), KmsError> {
    match value {
        Some(p) if p < MIN_ROTATION_PERIOD => Err(invalid(format!(
            "rotation_period: must be at least {MIN_ROTATION_PERIOD} seconds (1 day), got {p}"
        ))),
        _ => Ok(()),
    }
}

/// A page size: 0 means the default; above 1000 is refused.
pub fn page_size(value: u32) -> Result<usize, KmsError> {
    use lockbox_proto::common::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
    match value {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n > MAX_PAGE_SIZE => Err(invalid(format!(
            "page_size: must be at most {MAX_PAGE_SIZE}, got {n}"
        ))),
        n => Ok(n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(name("").is_ok());
        assert!(name("my-key-1").is_ok());
        assert!(name("1key").is_err());
        assert!(name("Key").is_err());
        assert!(name(&"a".repeat(100)).is_ok());
        assert!(name(&"a".repeat(101)).is_err());
    }

    #[test]
    fn label_rules() {
        let mut l = BTreeMap::new();
        l.insert("env".to_string(), "prod".to_string());
        assert!(labels(&l).is_ok());
        l.insert("Env".to_string(), "x".to_string());
        assert!(labels(&l).is_err());
        let many: BTreeMap<_, _> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(labels(&many).is_err());
    }

    #[test]
    fn periods_and_pages() {
        assert!(rotation_period(None).is_ok());
        assert!(rotation_period(Some(3600)).is_err());
        assert!(rotation_period(Some(86400)).is_ok());
        assert_eq!(page_size(0).unwrap(), 100);
        assert!(page_size(1001).is_err());
    }
}
