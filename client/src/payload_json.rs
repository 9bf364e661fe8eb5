//! The JSON form of payload entries that the `lockbox` CLI takes with `--payload` and
//! `--payload-file`: a list of `{"key": ..., "text_value": ...}` or
//! `{"key": ..., "binary_value": <base64>}` objects.

use base64::Engine;
use lockbox_proto::SecretBytes;
use lockbox_proto::lockbox::{PayloadEntryChange, PayloadValue};
use serde_json::Value;

/// Parses `text` into entry changes that set each key; the error says what is wrong, in words
/// meant for the person who wrote the JSON. Every value is copied into wiped storage; the
/// parsed JSON tree is dropped before this returns.
pub fn parse_entries(text: &[u8]) -> Result<Vec<PayloadEntryChange>, String> {
    let items: Vec<Value> =
        serde_json::from_slice(text).map_err(|e| format!("not a JSON list of entries: {e}"))?;
    let mut changes = Vec::with_capacity(items.len());
    for item in items {
        let key = item
            .get("key")
            .and_then(Value::as_str)
            .ok_or("every entry needs a \"key\" string")?
            .to_owned();
        let value = match (item.get("text_value"), item.get("binary_value")) {
            (Some(Value::String(t)), None) => {
                PayloadValue::Text(SecretBytes::new(t.as_bytes().to_vec()))
            }
            (None, Some(Value::String(b))) => PayloadValue::Binary(SecretBytes::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("binary_value of {key:?} is not base64: {e}"))?,
            )),
            _ => {
                return Err(format!(
                    "entry {key:?} needs exactly one of text_value or binary_value (a string)"
                ));
            }
        };
        changes.push(PayloadEntryChange {
            key,
            value: Some(value),
        });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_entries_parse_and_mistakes_are_named() {
        let changes =
            parse_entries(br#"[{"key":"a","text_value":"x"},{"key":"b","binary_value":"AAE="}]"#)
                .unwrap_or_default();
        assert_eq!(changes.len(), 2);
        assert!(matches!(&changes[1].value, Some(PayloadValue::Binary(b)) if b.expose() == [0, 1]));
        for (bad, says) in [
            (&b"{}"[..], "not a JSON list"),
            (br#"[1]"#, "needs a \"key\""),
            (br#"[{"key":"a"}]"#, "exactly one of"),
            (
                br#"[{"key":"a","text_value":"x","binary_value":"AA=="}]"#,
                "exactly one of",
            ),
            (br#"[{"key":"a","binary_value":"!"}]"#, "not base64"),
        ] {
            let error = parse_entries(bad).err().unwrap_or_default();
            assert!(error.contains(says), "{error}");
        }
    }
}
