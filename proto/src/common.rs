//! Message types both services share: access bindings and their changes, and pages of a
//! listing.

use serde::{Deserialize, Serialize};

/// Largest page a `List*` call returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Page size when the request leaves it at 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// A page request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// At most this many items; 0 means the default (100), more than 1000 is refused.
    pub page_size: u32,
    /// `next_page_token` of the previous page, or empty for the first.
    pub page_token: String,
}

/// A role granted to a subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccessBinding {
    /// Role id, e.g. `kms.keys.decrypter`.
    pub role_id: String,
    /// Subject, e.g. `user:alice`, `group:ops`, `system:allAuthenticatedUsers`.
    pub subject: String,
}

/// Whether an access binding delta adds or removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AccessBindingAction {
    /// Add the binding (no-op if present).
    Add,
    /// Remove the binding (no-op if absent).
    Remove,
}

/// One change in `UpdateAccessBindings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessBindingDelta {
    /// Add or remove.
    pub action: AccessBindingAction,
    /// The binding.
    pub binding: AccessBinding,
}

/// A quota, its limit and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// `lockbox.secrets.count`, `kms.keys.count`, ….
    pub name: String,
    /// What it limits each of: `cloud`, `secret`, `version`, `folder` or `key`.
    pub per: String,
    /// The limit, in what it counts.
    pub limit: u64,
    /// The usage of the cloud or folder asked about, or of its most used secret or key for
    /// a quota per secret or key; `None` for a limit checked on each version as it is
    /// written.
    pub usage: Option<u64>,
    /// Whose usage it is: `cloud ID`, `secret ID`, `folder ID` or `key ID`.
    pub resource: String,
}
