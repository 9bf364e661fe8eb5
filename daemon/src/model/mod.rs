//! Lockbox's domain: the records the store holds ([`records`]: resources, secrets, versions,
//! operations, service accounts), a version's entries and their stored layout ([`entries`]), ids,
//! validation and password generation. Plain data and rules; no I/O.

pub mod entries;
pub mod ids;
pub mod password;
pub mod records;
pub mod validate;

pub use entries::{EntriesLayout, Entry};
pub use records::*;

/// Schema of the stored records; a data directory with a newer one is refused, an older one
/// upgraded at start.
///
/// - 1: the first.
/// - 2: a sealed payload records the layout of its entries ([`EntriesLayout`]); schema 1
///   wrote layout 0 without saying so, and reads as such.
/// - 3: a secret's `version_count` counts its versions not destroyed (before: every version
///   ever created), so destroyed versions free their place in the quota.
pub const SCHEMA: u32 = 3;
