//! The lockbox wire protocol: everything that crosses a process boundary, and nothing else.
//!
//! A connection carries length-prefixed postcard frames ([`frame`]). It opens with a
//! [`hello::Hello`] naming the protocol version and the service the client expects; after that
//! every frame is a [`message::Request`] or [`message::Response`] matched by a `u64` id, so a
//! client may pipeline many requests on one connection. Failures carry a stable
//! [`error::ErrorCode`] and a human message.
//!
//! Service-account tokens ([`token`]) are defined here too, since they cross the boundary.
//! Types both services use (access bindings, pages) are in [`common`].
//!
//! This crate has no I/O: the transports live in `lockbox-rpc`.
#![forbid(unsafe_code)]

pub mod backup;
pub mod bytes;
pub mod common;
pub mod error;
pub mod frame;
pub mod hello;
pub mod ids;
pub mod kms;
pub mod lockbox;
pub mod message;
pub mod payload;
pub mod token;
pub mod variant;

pub use bytes::{SecretBytes, Wiping};
pub use error::{Error, ErrorCode};
pub use message::{Principal, Request, Response};
