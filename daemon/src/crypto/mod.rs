//! Encryption in lockboxd, below the service layer: payloads sealed under a fresh data key
//! each ([`envelope`]), data keys wrapped by the service [`keyring`] or through the link to
//! `lockbox-kms` ([`kms_link`]), all on AES-256-GCM as one module uses it (`aead`). Nothing
//! here knows what a payload holds, who may read it, or where it is stored.

mod aead;
pub mod envelope;
pub mod keyring;
pub mod kms_link;
