//! `lockboxd`, the secrets daemon: secrets, versions and payloads on RocksDB, every payload
//! envelope-encrypted with a fresh data key wrapped through `lockbox-kms`.
//!
//! The layers, each importing only from those below it (a test in the suite checks):
//!
//! - [`server`]: the Unix-socket front-end; the only module that knows the wire (`proto`).
//! - [`service`]: the operations with their authorization, on domain types.
//! - [`crypto`], [`iam`], [`store`]: envelope encryption and the KMS link; identity, roles
//!   and bindings; the key-value store and its typed records.
//! - [`model`]: the domain's records, ids, validation, and the stored layout of entries.
//! - [`error`], [`random`]: the error every layer returns, and the random source.
//!
//! Plaintext payloads live only in zeroizing buffers: never on disk, in logs or metrics.
#![forbid(unsafe_code)]

pub mod config;
pub mod crypto;
pub mod error;
pub mod iam;
pub mod model;
pub mod random;
pub mod server;
pub mod service;
pub mod store;
