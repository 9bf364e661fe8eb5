//! Printing results: JSON values shown as JSON or as indented `field: value` text.

use crate::Format;
use base64::Engine;
use lockbox_client::proto::common::AccessBinding;
use lockbox_client::proto::kms::{
    AsymmetricSignatureKey, KeyStatus, SymmetricAlgorithm, SymmetricKey, SymmetricKeyVersion,
    VersionStatus,
};
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// Prints `value` in `format`.
pub(crate) fn print(format: Format, value: &Value) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Text => {
            let mut out = String::new();
            text(value, 0, &mut out);
            print!("{out}");
        }
    }
}

fn text(value: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match value {
        Value::Object(map) => {
            // Like `yc`, text output leaves out fields that are empty.
            let present = map.iter().filter(|(_, v)| !is_empty(v));
            for (k, v) in present {
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text(v, indent + 1, out);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text(v, indent + 1, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) => {
                        let mut inner = String::new();
                        text(item, indent + 1, &mut inner);
                        // First line gets the list marker in place of its indentation.
                        let marker = format!("{pad}- ");
                        let body = inner
                            .strip_prefix(&"  ".repeat(indent + 1))
                            .unwrap_or(&inner);
                        out.push_str(&marker);
                        out.push_str(body);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(value))),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// RFC 3339 time from Unix seconds.
pub(crate) fn time(seconds: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(seconds.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

fn algorithm(a: SymmetricAlgorithm) -> &'static str {
    match a {
        SymmetricAlgorithm::Aes128 => "AES_128",
        SymmetricAlgorithm::Aes192 => "AES_192",
        SymmetricAlgorithm::Aes256 => "AES_256",
        _ => "UNKNOWN",
    }
}

fn key_status(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Creating => "CREATING",
        KeyStatus::Active => "ACTIVE",
        KeyStatus::Inactive => "INACTIVE",
        _ => "UNKNOWN",
    }
}

fn version_status(s: VersionStatus) -> &'static str {
    match s {
        VersionStatus::Active => "ACTIVE",
        VersionStatus::ScheduledForDestruction => "SCHEDULED_FOR_DESTRUCTION",
        VersionStatus::Destroyed => "DESTROYED",
        _ => "UNKNOWN",
    }
}

/// A key version as JSON.
pub(crate) fn version(v: &SymmetricKeyVersion) -> Value {
    let mut value = json!({
        "id": v.id,
        "key_id": v.key_id,
        "status": version_status(v.status),
        "algorithm": algorithm(v.algorithm),
        "created_at": time(v.created_at),
        "primary": v.primary,
    });
    if let Some(t) = v.destroy_at {
        value["destroy_at"] = json!(time(t));
    }
    value
}

/// A symmetric key as JSON.
pub(crate) fn symmetric_key(k: &SymmetricKey) -> Value {
    let mut value = json!({
        "id": k.id,
        "folder_id": k.folder_id,
        "created_at": time(k.created_at),
        "name": k.name,
        "description": k.description,
        "labels": k.labels,
        "status": key_status(k.status),
        "primary_version": version(&k.primary_version),
        "default_algorithm": algorithm(k.default_algorithm),
        "deletion_protection": k.deletion_protection,
    });
    if let Some(p) = k.rotation_period {
        value["rotation_period"] = json!(format!("{p}s"));
    }
    if let Some(t) = k.rotated_at {
        value["rotated_at"] = json!(time(t));
    }
    value
}

/// A signature key as JSON.
pub(crate) fn signature_key(k: &AsymmetricSignatureKey) -> Value {
    json!({
        "id": k.id,
        "folder_id": k.folder_id,
        "created_at": time(k.created_at),
        "name": k.name,
        "description": k.description,
        "labels": k.labels,
        "status": key_status(k.status),
        "signature_algorithm": "ECDSA_NIST_P256_SHA_256",
        "deletion_protection": k.deletion_protection,
    })
}

/// An access binding as JSON.
pub(crate) fn binding(b: &AccessBinding) -> Value {
    json!({ "role_id": b.role_id, "subject": b.subject })
}

/// Bytes as standard base64.
pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

use lockbox_client::proto::lockbox::{self as lb, Operation, OperationResult};
use lockbox_client::proto::payload::{PayloadEntries, PayloadValueRef};

fn secret_status(s: lb::SecretStatus) -> &'static str {
    match s {
        lb::SecretStatus::Creating => "CREATING",
        lb::SecretStatus::Active => "ACTIVE",
        lb::SecretStatus::Inactive => "INACTIVE",
        _ => "UNKNOWN",
    }
}

fn secret_version_status(s: lb::VersionStatus) -> &'static str {
    match s {
        lb::VersionStatus::Active => "ACTIVE",
        lb::VersionStatus::ScheduledForDestruction => "SCHEDULED_FOR_DESTRUCTION",
        lb::VersionStatus::Destroyed => "DESTROYED",
        _ => "UNKNOWN",
    }
}

/// A secret version as JSON.
pub(crate) fn secret_version(v: &lb::Version) -> Value {
    let mut value = json!({
        "id": v.id,
        "secret_id": v.secret_id,
        "created_at": time(v.created_at),
        "description": v.description,
        "status": secret_version_status(v.status),
        "payload_entry_keys": v.payload_entry_keys,
    });
    if let Some(t) = v.destroy_at {
        value["destroy_at"] = json!(time(t));
    }
    value
}

/// A secret as JSON.
pub(crate) fn secret(s: &lb::Secret) -> Value {
    let mut value = json!({
        "id": s.id,
        "folder_id": s.folder_id,
        "created_at": time(s.created_at),
        "name": s.name,
        "description": s.description,
        "labels": s.labels,
        "kms_key_id": s.kms_key_id,
        "status": secret_status(s.status),
        "deletion_protection": s.deletion_protection,
    });
    if let Some(v) = &s.current_version {
        value["current_version"] = secret_version(v);
    }
    if let Some(p) = &s.password_payload_specification {
        value["password_payload_specification"] = json!({
            "password_key": p.password_key,
            "length": p.length,
            "include_uppercase": p.include_uppercase,
            "include_lowercase": p.include_lowercase,
            "include_digits": p.include_digits,
            "include_punctuation": p.include_punctuation,
            "included_punctuation": p.included_punctuation,
            "excluded_punctuation": p.excluded_punctuation,
        });
    }
    value
}

/// A cloud as JSON.
pub(crate) fn cloud(c: &lb::Cloud) -> Value {
    json!({
        "id": c.id,
        "organization_id": c.organization_id,
        "created_at": time(c.created_at),
        "name": c.name,
        "description": c.description,
    })
}

/// A folder as JSON.
pub(crate) fn folder(f: &lb::Folder) -> Value {
    json!({
        "id": f.id,
        "cloud_id": f.cloud_id,
        "created_at": time(f.created_at),
        "name": f.name,
        "description": f.description,
    })
}

/// An operation as JSON, with its result.
pub(crate) fn operation(op: &Operation) -> Value {
    let mut value = json!({
        "id": op.id,
        "description": op.description,
        "created_at": time(op.created_at),
        "created_by": op.created_by,
        "modified_at": time(op.modified_at),
        "done": op.done,
        "resource_id": op.resource_id,
    });
    match &op.result {
        Some(Ok(OperationResult::Secret(s))) => value["response"] = secret(s),
        Some(Ok(OperationResult::Version(v))) => value["response"] = secret_version(v),
        Some(Ok(OperationResult::Cloud(c))) => value["response"] = cloud(c),
        Some(Ok(OperationResult::Folder(f))) => value["response"] = folder(f),
        Some(Err(e)) => value["error"] = json!({ "code": e.code.as_str(), "message": e.message }),
        _ => {}
    }
    value
}

/// Payload entries as JSON: text values as text, binary values in base64.
pub(crate) fn entries(entries: PayloadEntries<'_>) -> Value {
    Value::Array(
        entries
            .map(|e| match e.value {
                PayloadValueRef::Text(t) => {
                    json!({ "key": e.key, "text_value": String::from_utf8_lossy(t) })
                }
                PayloadValueRef::Binary(b) => json!({ "key": e.key, "binary_value": b64(b) }),
                _ => json!({ "key": e.key }),
            })
            .collect(),
    )
}
