//! `lockbox-kms`: the HSM-style process that holds lockbox's root keys.
//!
//! Keys live in a keystore sealed at rest ([`seal`], [`keystore`]). The service layer
//! ([`service`]) offers key management, symmetric crypto and signatures, each operation
//! authorized by the KMS's own access bindings ([`access`]). The server ([`server`]) exposes
//! it over a Unix socket using the lockbox protocol.
//!
//! Key material never leaves this process: no operation returns it and nothing logs it.
#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod config;
pub mod crypto;
pub mod error;
pub mod ids;
pub mod keystore;
mod meters;
pub mod model;
pub mod seal;
pub mod server;
pub mod service;
pub mod validate;
mod wire;
