//! Text a token holder or a CLI user chooses: a bearer token, and the JSON of `--payload`.

use lockbox_proto::token;

/// A bearer token as lockboxd's Authenticate reads it.
pub(crate) fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parsed) = token::parse(text) {
        // What parses is three parts, and the first two are what was signed.
        assert!(text.len() <= 8192);
        assert!(text.starts_with(&parsed.signing_input));
        assert_eq!(text.matches('.').count(), 2);
    }
}

/// `lockbox secret add-version --payload ...`.
pub(crate) fn payload_json(data: &[u8]) {
    if let Ok(entries) = lockbox_client::payload_json::parse_entries(data) {
        assert!(entries.iter().all(|e| e.value.is_some()));
    }
}
