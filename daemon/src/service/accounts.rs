//! Service accounts: identities for programs. Each has P-256 keys whose private half is
//! returned once at creation and never stored; a program signs a short-lived ES256 token
//! with it and sends it once per connection to act as the account.

use super::Lockbox;
use crate::error::LockboxError;
use crate::iam::roles::Permission;
use crate::iam::tokens::{self, Presented};
use crate::iam::{Caller, Frontend};
use crate::model::ids::{self, new_id};
use crate::model::validate;
use crate::model::{Resource, ServiceAccountKeyRecord, ServiceAccountRecord};
use crate::store::Batch;
use crate::store::records::{Listed, for_each_page};
use lockbox_proto::Principal;
use std::sync::atomic::{AtomicU64, Ordering};
use zeroize::Zeroizing;

/// A connection's switch to a service account: the caller it acts as, and what that rests
/// on, checked again before each of its requests ([`Lockbox::session_caller`]).
#[derive(Debug)]
pub struct AccountSession {
    /// The account, as requests run.
    caller: Caller,
    /// The account, to find it again.
    account_id: String,
    /// The key whose token opened the session; deleting it ends the session.
    key_id: String,
    /// The last second of the token's validity, by the daemon's clock.
    valid_until: i64,
    /// The mutation count at which the key and the account were last found. Only a
    /// mutation can delete either, so while the count stays the same they need no lookup.
    checked: AtomicU64,
}

impl AccountSession {
    /// `serviceAccount:<id>`.
    pub fn subject(&self) -> &str {
        self.caller.subject()
    }
}
/// A new key: its record and its private half as PEM PKCS#8.
#[derive(Debug)]
pub struct NewKey {
    /// The stored (public) record.
    pub record: ServiceAccountKeyRecord,
    /// The private key, returned once.
    pub private_key_pem: Zeroizing<String>,
}

impl Lockbox {
    fn folder_chain(&self, folder_id: &str) -> Result<Vec<Resource>, LockboxError> {
        self.chain(&Resource::Folder(folder_id.to_owned()))
    }

    /// A service account the caller holds `permission` on (through its folder).
    fn authorized_account(
        &self,
        caller: &Caller,
        id: &str,
        permission: Permission,
    ) -> Result<ServiceAccountRecord, LockboxError> {
        let account = self.account(id)?;
        self.authorize(caller, &self.folder_chain(&account.folder_id)?, permission)?;
        Ok(account)
    }

    /// `PermissionDenied` unless `caller` may act as `account`: whoever holds a key of the
    /// account acts with every role it holds, so only someone who could grant each of them
    /// may mint or delete one. In lockboxd that is the rule for granting (the role within
    /// the caller's own reach where it is bound, owners reaching everything); lockbox-kms
    /// checks the account's KMS roles the same way.
    fn check_may_act_as(
        &self,
        caller: &Caller,
        account: &ServiceAccountRecord,
    ) -> Result<(), LockboxError> {
        let subject = format!("serviceAccount:{}", account.id);
        let held: Vec<(Resource, String)> = self
            .bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flat_map(|(resource, rb)| {
                rb.list()
                    .iter()
                    .filter(|b| b.subject == subject)
                    .map(|b| (resource.clone(), b.role.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (resource, role) in held {
            if !self.may_grant(caller, &self.chain(&resource)?, &role) {
                return Err(LockboxError::PermissionDenied(format!(
                    "{} may not act as {subject}: it holds {role} on {resource}, beyond the \
                     caller's own roles",
                    caller.subject()
                )));
            }
        }
        Ok(())
    }

    /// [`check_may_act_as`](Self::check_may_act_as) in both authorities: lockboxd's roles
    /// first, then lockbox-kms's, asked on the caller's behalf. Outside the writer lock (the
    /// KMS is not waited for under it); the caller checks lockboxd's part again under it.
    async fn check_may_act_as_everywhere(
        &self,
        caller: &Caller,
        account: &ServiceAccountRecord,
    ) -> Result<(), LockboxError> {
        self.check_may_act_as(caller, account)?;
        self.kms
            .check_may_act_as(&caller.principal, &format!("serviceAccount:{}", account.id))
            .await
    }

    /// A service account, or `NotFound`.
    fn account(&self, id: &str) -> Result<ServiceAccountRecord, LockboxError> {
        validate::id("service_account_id", id)?;
        self.records
            .service_account(id)?
            .ok_or_else(|| LockboxError::NotFound(format!("service account {id} not found")))
    }

    /// Creates a service account in a folder (empty: the default one). Needs the right to
    /// control access on the folder: an account is a way to hold roles.
    pub async fn create_service_account(
        &self,
        caller: &Caller,
        folder_id: &str,
        name: &str,
        description: &str,
    ) -> Result<ServiceAccountRecord, LockboxError> {
        validate::resource_name(name)?;
        validate::description("description", description)?;
        let folder = self.folder_or_default(folder_id)?;
        let writer = self.write_lock().await;
        self.authorize(
            caller,
            &self.folder_chain(&folder.id)?,
            Permission::SetAccessBindings,
        )?;
        let mut taken = false;
        for_each_page(
            |t| self.records.service_accounts_in_folder(&folder.id, t, 1000),
            |a| taken |= a.name == name,
        )?;
        if taken {
            return Err(LockboxError::AlreadyExists(format!(
                "a service account named {name:?} already exists in folder {}",
                folder.id
            )));
        }
        let account = ServiceAccountRecord {
            id: new_id(ids::SERVICE_ACCOUNT),
            folder_id: folder.id,
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: self.now(),
        };
        let mut batch = Batch::default();
        self.records.put_service_account(&mut batch, &account);
        self.commit(writer, batch).await?;
        Ok(account)
    }

    /// A service account.
    pub fn get_service_account(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<ServiceAccountRecord, LockboxError> {
        self.authorized_account(caller, id, Permission::Get)
    }

    /// A folder's service accounts.
    pub fn list_service_accounts(
        &self,
        caller: &Caller,
        folder_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<ServiceAccountRecord>, LockboxError> {
        validate::page_token(page_token)?;
        let folder = self.folder_or_default(folder_id)?;
        self.authorize(caller, &self.folder_chain(&folder.id)?, Permission::Get)?;
        Ok(self.records.service_accounts_in_folder(
            &folder.id,
            page_token,
            validate::page_size(page_size)?,
        )?)
    }

    /// Deletes a service account and its keys.
    pub async fn delete_service_account(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(), LockboxError> {
        let writer = self.write_lock().await;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        let mut batch = Batch::default();
        self.records.delete_service_account(&mut batch, &account)?;
        // Its roles go with it (lockbox-kms keeps its own bindings, which name an account
        // that can no longer act).
        let bindings =
            self.bindings_going_with(None, Some(&format!("serviceAccount:{}", account.id)));
        self.put_binding_changes(&mut batch, &bindings);
        self.commit_then(writer, batch, || self.install_binding_changes(bindings))
            .await
    }

    /// Creates a key pair for an account; only the public half is stored. Needs the right
    /// to change bindings on its folder and to grant every role it holds, in both
    /// authorities.
    pub async fn create_service_account_key(
        &self,
        caller: &Caller,
        id: &str,
        description: &str,
    ) -> Result<NewKey, LockboxError> {
        validate::description("description", description)?;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        self.check_may_act_as_everywhere(caller, &account).await?;
        let writer = self.write_lock().await;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        self.check_may_act_as(caller, &account)?;
        let (public_key, private_key_pem) = tokens::new_key_pair()?;
        let record = ServiceAccountKeyRecord {
            id: new_id(ids::SERVICE_ACCOUNT_KEY),
            service_account_id: account.id,
            description: description.to_owned(),
            created_at: self.now(),
            public_key,
        };
        let mut batch = Batch::default();
        self.records.put_service_account_key(&mut batch, &record);
        self.commit(writer, batch).await?;
        Ok(NewKey {
            record,
            private_key_pem,
        })
    }

    /// An account's keys.
    pub fn list_service_account_keys(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Vec<ServiceAccountKeyRecord>, LockboxError> {
        let account = self.authorized_account(caller, id, Permission::Get)?;
        Ok(self.records.service_account_keys(&account.id)?)
    }

    /// Deletes a key; tokens signed with it are refused from then on. Needs what creating
    /// one does.
    pub async fn delete_service_account_key(
        &self,
        caller: &Caller,
        id: &str,
        key_id: &str,
    ) -> Result<(), LockboxError> {
        validate::id("key_id", key_id)?;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        self.check_may_act_as_everywhere(caller, &account).await?;
        let writer = self.write_lock().await;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        self.check_may_act_as(caller, &account)?;
        if self
            .records
            .service_account_key(&account.id, key_id)?
            .is_none()
        {
            return Err(LockboxError::NotFound(format!(
                "key {key_id} of service account {id} not found"
            )));
        }
        let mut batch = Batch::default();
        self.records
            .delete_service_account_key(&mut batch, &account.id, key_id);
        self.commit(writer, batch).await
    }

    /// Verifies a token: shape, algorithm, a key of the issuing account that still exists,
    /// the signature, the audience, the time window and single use. Returns the account as a
    /// caller.
    pub fn authenticate(
        &self,
        token: &str,
        frontend: Frontend,
    ) -> Result<AccountSession, LockboxError> {
        // Loaded before the lookups: a deletion completing from here on moves it on, and the
        // next request looks again.
        let generation = self.generation.load(Ordering::Acquire);
        let presented = Presented::parse(token)?;
        let account_id = presented.account_id();
        let key = self
            .records
            .service_account_key(account_id, presented.key_id())?
            .ok_or_else(tokens::unknown_key)?;
        let now = self.now();
        presented.verify(&key.public_key, now)?;
        presented.use_once(
            &mut self.replays.lock().unwrap_or_else(|p| p.into_inner()),
            now,
        )?;
        if self.records.service_account(account_id)?.is_none() {
            return Err(tokens::account_gone());
        }
        tracing::info!(service_account = %account_id, key_id = %presented.key_id(), "service account authenticated");
        Ok(AccountSession {
            caller: Caller {
                principal: Principal {
                    subject: format!("serviceAccount:{account_id}"),
                    groups: Vec::new(),
                },
                frontend,
            },
            account_id: account_id.to_owned(),
            key_id: presented.key_id().to_owned(),
            valid_until: presented.valid_until(),
            checked: AtomicU64::new(generation),
        })
    }

    /// The caller a service-account session acts as, while it still may: its token has not
    /// expired and its key and account still exist. Otherwise `Unauthenticated`, and the
    /// front-end ends the connection.
    pub fn session_caller<'s>(
        &self,
        session: &'s AccountSession,
    ) -> Result<&'s Caller, LockboxError> {
        if self.now() > session.valid_until {
            return Err(tokens::session_expired());
        }
        let generation = self.generation.load(Ordering::Acquire);
        if session.checked.load(Ordering::Relaxed) != generation {
            if self
                .records
                .service_account_key(&session.account_id, &session.key_id)?
                .is_none()
            {
                return Err(tokens::unknown_key());
            }
            if self.records.service_account(&session.account_id)?.is_none() {
                return Err(tokens::account_gone());
            }
            session.checked.store(generation, Ordering::Relaxed);
        }
        Ok(&session.caller)
    }
}
