//! `lockboxd`, the secrets daemon: secrets, versions and payloads on RocksDB, every payload
//! envelope-encrypted with a fresh data key wrapped through `lockbox-kms`.
//!
//! - [`store`]: the key-value trait, its RocksDB implementation and the typed records.
//! - [`envelope`]: data keys, payload sealing and the service keyring.
//! - [`service`]: the operations on domain types, knowing nothing of the wire.
//! - [`server`] and `wire`: the Unix-socket front-end and the conversions to `proto`.
//! - [`kms`]: the reconnecting link to `lockbox-kms`; [`keyring`]: unlocking at start.
//!
//! Plaintext payloads live only in zeroizing buffers: never on disk, in logs or metrics.
#![forbid(unsafe_code)]

pub mod access;
pub mod config;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod keyring;
pub mod kms;
pub mod model;
pub mod password;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;
mod wire;
