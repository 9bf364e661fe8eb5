//! `lockboxd`, the secrets daemon: secrets, versions and payloads on RocksDB, every payload
//! envelope-encrypted through `lockbox-kms`.
//!
//! Not implemented yet. The crate exists so the workspace has the layout of the design from
//! the start; the daemon itself arrives with its own issue.
#![forbid(unsafe_code)]
