//! Shared by the `lockbox-bench` load generator and the criterion benches: the in-process
//! fixture of lockboxd's payload read work.
#![allow(clippy::unwrap_used)] // a bench that cannot set up should abort

pub mod work;
