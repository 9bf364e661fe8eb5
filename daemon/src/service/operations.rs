//! Listing a secret's operations.

use super::{Caller, Lockbox};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::OperationRecord;
use crate::model::validate;
use crate::store::records::Listed;

impl Lockbox {
    /// A secret's operations, newest first.
    pub fn list_operations(
        &self,
        caller: &Caller,
        secret_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<OperationRecord>, LockboxError> {
        validate::page_token(page_token)?;
        let secret = self.secret(secret_id)?;
        self.authorize_secret(caller, &secret, Permission::Get)?;
        Ok(self
            .records
            .operations(&secret.id, page_token, validate::page_size(page_size)?)?)
    }
}
