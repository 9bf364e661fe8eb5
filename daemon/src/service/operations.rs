//! Listing the operations recorded on a secret, or on a folder, cloud or organization.

use super::{Caller, Lockbox};
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::model::validate;
use crate::model::{OperationRecord, Resource};
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
        self.list_resource_operations(
            caller,
            &Resource::Secret(secret_id.to_owned()),
            page_size,
            page_token,
        )
    }

    /// The operations recorded on `resource`, newest first, for a caller who may read it.
    pub fn list_resource_operations(
        &self,
        caller: &Caller,
        resource: &Resource,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<OperationRecord>, LockboxError> {
        validate::page_token(page_token)?;
        Self::check_resource_id(resource)?;
        let chain = self.chain(resource)?;
        self.authorize(caller, &chain, Permission::Get)?;
        Ok(self
            .records
            .operations(resource.id(), page_token, validate::page_size(page_size)?)?)
    }
}
