//! Service accounts: identities for programs. Each has P-256 keys whose private half is
//! returned once at creation and never stored; a program signs a short-lived ES256 token
//! with it and sends it once per connection to act as the account.

use super::{Caller, Lockbox};
use crate::access::{Permission, Resource};
use crate::error::LockboxError;
use crate::ids::{self, new_id};
use crate::model::{ServiceAccountKeyRecord, ServiceAccountRecord};
use crate::store::Batch;
use crate::store::records::Listed;
use crate::validate;
use lockbox_proto::Principal;
use lockbox_proto::token::{self, LOCKBOXD_AUDIENCE, MAX_LIFETIME};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use std::collections::HashMap;
use zeroize::Zeroizing;

/// Clock skew tolerated between the signer and the daemon, seconds.
const SKEW: i64 = 60;

/// Token ids seen and when they expire, so a token is accepted once.
#[derive(Debug, Default)]
pub(super) struct ReplayCache(HashMap<String, i64>);

impl ReplayCache {
    /// Records `jti` (valid until `exp`); false if it was already used.
    fn first_use(&mut self, jti: &str, exp: i64, now: i64) -> bool {
        self.0.retain(|_, e| *e + SKEW >= now);
        if self.0.contains_key(jti) {
            return false;
        }
        self.0.insert(jti.to_owned(), exp);
        true
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

fn unauthenticated(reason: &str) -> LockboxError {
    LockboxError::Unauthenticated(format!("service account token refused: {reason}"))
}

/// The PEM public key of a stored record.
pub fn public_key_pem(k: &ServiceAccountKeyRecord) -> String {
    VerifyingKey::from_sec1_bytes(&k.public_key)
        .ok()
        .and_then(|v| v.to_public_key_pem(LineEnding::LF).ok())
        .unwrap_or_default()
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
        crate::store::records::for_each_page(
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
        self.commit(writer, batch).await
    }

    /// Creates a key pair for an account; only the public half is stored.
    pub async fn create_service_account_key(
        &self,
        caller: &Caller,
        id: &str,
        description: &str,
    ) -> Result<NewKey, LockboxError> {
        validate::description("description", description)?;
        let writer = self.write_lock().await;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
        let signing = loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            crate::envelope::fill_random(bytes.as_mut());
            // Fails only for scalars outside the group order, with probability about 2^-32.
            if let Ok(k) = SigningKey::from_slice(bytes.as_ref()) {
                break k;
            }
        };
        let private_key_pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| LockboxError::Internal(format!("key encoding failed: {e}")))?;
        let record = ServiceAccountKeyRecord {
            id: new_id(ids::SERVICE_ACCOUNT_KEY),
            service_account_id: account.id,
            description: description.to_owned(),
            created_at: self.now(),
            public_key: signing.verifying_key().to_sec1_bytes().to_vec(),
        };
        let mut batch = Batch::default();
        self.records.put_service_account_key(&mut batch, &record);
        self.commit(writer, batch).await?;
        Ok(NewKey {
            record,
            private_key_pem: Zeroizing::new(private_key_pem.to_string()),
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

    /// Deletes a key; tokens signed with it are refused from then on.
    pub async fn delete_service_account_key(
        &self,
        caller: &Caller,
        id: &str,
        key_id: &str,
    ) -> Result<(), LockboxError> {
        validate::id("key_id", key_id)?;
        let writer = self.write_lock().await;
        let account = self.authorized_account(caller, id, Permission::SetAccessBindings)?;
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
    pub fn authenticate(&self, token: &str) -> Result<Caller, LockboxError> {
        let parsed = token::parse(token).ok_or_else(|| unauthenticated("not a compact JWS"))?;
        let (header, claims) = (&parsed.header, &parsed.claims);
        if header.alg != token::ALGORITHM {
            return Err(unauthenticated("only ES256 is accepted"));
        }
        if !crate::ids::looks_like_id(&claims.iss) || !crate::ids::looks_like_id(&header.kid) {
            return Err(unauthenticated("unknown key"));
        }
        let key = self
            .records
            .service_account_key(&claims.iss, &header.kid)?
            .ok_or_else(|| unauthenticated("unknown or deleted key"))?;
        let verifying = VerifyingKey::from_sec1_bytes(&key.public_key)
            .map_err(|_| LockboxError::Internal("a stored public key is unreadable".into()))?;
        let signature = Signature::from_slice(&parsed.signature)
            .map_err(|_| unauthenticated("bad signature"))?;
        verifying
            .verify(parsed.signing_input.as_bytes(), &signature)
            .map_err(|_| unauthenticated("bad signature"))?;
        if claims.aud != LOCKBOXD_AUDIENCE {
            return Err(unauthenticated("the token is for another audience"));
        }
        let now = self.now();
        if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_LIFETIME {
            return Err(unauthenticated(
                "the token's lifetime is not between 1 s and 1 h",
            ));
        }
        if claims.iat > now + SKEW {
            return Err(unauthenticated("the token is issued in the future"));
        }
        if claims.exp + SKEW < now {
            return Err(unauthenticated("the token has expired"));
        }
        let fresh = self
            .replays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_use(&claims.jti, claims.exp, now);
        if !fresh {
            return Err(unauthenticated("the token was already used"));
        }
        if self.records.service_account(&claims.iss)?.is_none() {
            return Err(unauthenticated("the service account no longer exists"));
        }
        tracing::info!(service_account = %claims.iss, key_id = %header.kid, "service account authenticated");
        Ok(Caller {
            principal: Principal {
                subject: format!("serviceAccount:{}", claims.iss),
                groups: Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_cache_accepts_once_and_forgets_expired_ids() {
        let mut cache = ReplayCache::default();
        assert!(cache.first_use("a", 100, 50));
        assert!(!cache.first_use("a", 100, 60));
        assert!(cache.first_use("b", 100, 60));
        // Long after expiry the entry is dropped (the token itself is refused as expired).
        assert!(cache.first_use("a", 100, 1000));
    }
}
