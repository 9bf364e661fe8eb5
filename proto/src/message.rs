//! Request and response messages: the id that matches them, and the subject a trusted relay
//! acts for.

use crate::error::Error;
use serde::{Deserialize, Serialize};

/// A request. The `id` is the first field so a server can still read it, and answer with an
/// error, when the rest of the frame does not decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request<B> {
    /// Chosen by the client, echoed in the response; unique among its requests in flight.
    pub id: u64,
    /// Set only by a trusted relay (the secrets daemon) acting for one of its callers; the
    /// server refuses it from anyone not configured as a relay.
    pub on_behalf_of: Option<Principal>,
    /// The operation.
    pub body: B,
}

/// A response to the request with the same `id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response<B> {
    /// The id of the request this answers. Id 0 answers a frame whose id could not be read.
    pub id: u64,
    /// The outcome.
    pub result: Result<B, Error>,
}

/// An authenticated caller as a relay presents it: the subject and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Principal {
    /// `user:<name>`, `serviceAccount:<id>`, …
    pub subject: String,
    /// `group:<name>` entries the subject belongs to.
    pub groups: Vec<String>,
}
