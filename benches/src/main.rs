//! `lockbox-bench`: load generator (filled in below).
fn main() {}
