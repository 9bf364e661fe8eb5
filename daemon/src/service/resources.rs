//! The organization > cloud > folder hierarchy: the defaults a fresh daemon creates, and
//! clouds and folders managed by users.

use super::{Caller, Done, Lockbox};
use crate::error::LockboxError;
use crate::iam::roles::{Permission, validate_binding};
use crate::model::Resource;
use crate::model::ids::{self, new_id};
use crate::model::validate;
use crate::model::{Binding, Cloud, Folder, OperationOutcome, Organization, SCHEMA};
use crate::store::Batch;
use crate::store::records::{Defaults, Listed, Records, for_each_page};

/// Prepares a store for use: refuses a newer schema, and on first start records the schema
/// and creates the default organization, cloud and folder, making `admins`
/// `organization-manager.organizations.owner` of the organization in the same batch, so a
/// fresh install has someone who can manage it. Never again: an installation whose owners
/// removed every binding stays without one. Returns the default ids.
pub fn bootstrap(records: &Records, now: i64, admins: &[String]) -> Result<Defaults, LockboxError> {
    let owners: Vec<Binding> = admins
        .iter()
        .map(|subject| Binding {
            role: "organization-manager.organizations.owner".into(),
            subject: subject.clone(),
        })
        .collect();
    for b in &owners {
        validate_binding(b)?;
    }
    ensure_defaults(records, now, &owners)
}

fn ensure_defaults(
    records: &Records,
    now: i64,
    owners: &[Binding],
) -> Result<Defaults, LockboxError> {
    match records.schema()? {
        Some(schema) if schema > SCHEMA => {
            return Err(LockboxError::FailedPrecondition(format!(
                "the data directory has schema {schema}, newer than this lockboxd understands ({SCHEMA}); \
                 run a newer lockboxd"
            )));
        }
        Some(schema) => {
            if schema < SCHEMA {
                upgrade(records, schema)?;
            }
            if let Some(defaults) = records.defaults()? {
                return Ok(defaults);
            }
        }
        None => {}
    }
    let organization = Organization {
        id: new_id(ids::ORGANIZATION),
        name: "default".into(),
        created_at: now,
    };
    let cloud = Cloud {
        id: new_id(ids::CLOUD),
        organization_id: organization.id.clone(),
        name: "default".into(),
        description: "created at first start".into(),
        created_at: now,
    };
    let folder = Folder {
        id: new_id(ids::FOLDER),
        cloud_id: cloud.id.clone(),
        name: "default".into(),
        description: "created at first start".into(),
        created_at: now,
    };
    let defaults = Defaults {
        organization_id: organization.id.clone(),
        cloud_id: cloud.id.clone(),
        folder_id: folder.id.clone(),
    };
    let mut batch = Batch::default();
    records.put_schema(&mut batch, SCHEMA);
    records.put_organization(&mut batch, &organization);
    records.put_cloud(&mut batch, &cloud);
    records.put_folder(&mut batch, &folder);
    records.put_defaults(&mut batch, &defaults);
    records.put_bindings(
        &mut batch,
        &Resource::Organization(organization.id.clone()),
        owners,
    );
    records.commit(batch)?;
    tracing::info!(folder_id = %folder.id, "created the default organization, cloud and folder");
    if !owners.is_empty() {
        let subjects: Vec<&str> = owners.iter().map(|b| b.subject.as_str()).collect();
        tracing::info!(admins = ?subjects, "made the administrators owners of the default organization");
    }
    Ok(defaults)
}

/// Brings a data directory of an older schema up to [`SCHEMA`] before anything is written in
/// the new form. From 1 to 2 no record changes (schema 1's payloads read as layout 0, see
/// [`SCHEMA`]); only the number does, so that an older lockboxd refuses the directory from
/// then on instead of failing on the first payload written in the new form. Below 3, every
/// secret's version count is recounted without its destroyed versions (first, so a crash
/// before the number is written only repeats it).
fn upgrade(records: &Records, from: u32) -> Result<(), LockboxError> {
    if from < 3 {
        let recounted = super::quotas::repair_usage(records)?.len();
        tracing::info!(
            recounted,
            "recounted the versions of secrets without destroyed ones"
        );
    }
    let mut batch = Batch::default();
    records.put_schema(&mut batch, SCHEMA);
    records.commit(batch)?;
    tracing::info!(from, to = SCHEMA, "upgraded the data directory's schema");
    Ok(())
}

impl Lockbox {
    /// A folder (empty id: the default folder), or `NotFound`.
    pub(super) fn folder_or_default(&self, folder_id: &str) -> Result<Folder, LockboxError> {
        let id = if folder_id.is_empty() {
            self.defaults.folder_id.as_str()
        } else {
            validate::id("folder_id", folder_id)?;
            folder_id
        };
        self.records
            .folder(id)?
            .ok_or_else(|| LockboxError::NotFound(format!("folder {id} not found")))
    }

    fn cloud_or_default(&self, cloud_id: &str) -> Result<Cloud, LockboxError> {
        let id = if cloud_id.is_empty() {
            self.defaults.cloud_id.as_str()
        } else {
            validate::id("cloud_id", cloud_id)?;
            cloud_id
        };
        self.records
            .cloud(id)?
            .ok_or_else(|| LockboxError::NotFound(format!("cloud {id} not found")))
    }

    /// Creates a cloud in an organization (empty: the default one).
    pub async fn create_cloud(
        &self,
        caller: &Caller,
        organization_id: &str,
        name: &str,
        description: &str,
    ) -> Result<(Cloud, Done), LockboxError> {
        validate::resource_name(name)?;
        validate::description("description", description)?;
        let organization_id = if organization_id.is_empty() {
            self.defaults.organization_id.clone()
        } else {
            validate::id("organization_id", organization_id)?;
            organization_id.to_owned()
        };
        let writer = self.write_lock().await;
        self.authorize(
            caller,
            &[Resource::Organization(organization_id.clone())],
            Permission::ManageResources,
        )?;
        if self.records.organization(&organization_id)?.is_none() {
            return Err(LockboxError::NotFound(format!(
                "organization {organization_id} not found"
            )));
        }
        if self.cloud_name_taken(&organization_id, name)? {
            return Err(LockboxError::AlreadyExists(format!(
                "a cloud named {name:?} already exists"
            )));
        }
        let cloud = Cloud {
            id: new_id(ids::CLOUD),
            organization_id,
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: self.now(),
        };
        let mut batch = Batch::default();
        self.records.put_cloud(&mut batch, &cloud);
        let done = self.record(
            &mut batch,
            caller,
            "Create cloud",
            &cloud.id,
            OperationOutcome::Cloud(cloud.clone()),
        )?;
        self.commit(writer, batch).await?;
        Ok((cloud, done))
    }

    fn cloud_name_taken(&self, organization_id: &str, name: &str) -> Result<bool, LockboxError> {
        let mut taken = false;
        for_each_page(
            |token| self.records.clouds(token, 1000),
            |c| {
                taken |= c.organization_id == organization_id && c.name == name;
            },
        )?;
        Ok(taken)
    }

    /// A cloud.
    pub fn get_cloud(&self, caller: &Caller, cloud_id: &str) -> Result<Cloud, LockboxError> {
        validate::id("cloud_id", cloud_id)?;
        let cloud = self.cloud_or_default(cloud_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Cloud(cloud.id.clone()))?,
            Permission::Get,
        )?;
        Ok(cloud)
    }

    /// Clouds, oldest first. Needs the right to read metadata on the organization.
    pub fn list_clouds(
        &self,
        caller: &Caller,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<Cloud>, LockboxError> {
        validate::page_token(page_token)?;
        let size = validate::page_size(page_size)?;
        let organization = Resource::Organization(self.defaults.organization_id.clone());
        self.authorize(caller, &[organization], Permission::Get)?;
        Ok(self.records.clouds(page_token, size)?)
    }

    /// Deletes a cloud that has no folders, and the bindings on it.
    pub async fn delete_cloud(
        &self,
        caller: &Caller,
        cloud_id: &str,
    ) -> Result<Done, LockboxError> {
        validate::id("cloud_id", cloud_id)?;
        let writer = self.write_lock().await;
        let cloud = self.cloud_or_default(cloud_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Cloud(cloud.id.clone()))?,
            Permission::ManageResources,
        )?;
        if !self.records.folders(&cloud.id, "", 1)?.items.is_empty() {
            return Err(LockboxError::FailedPrecondition(format!(
                "cloud {cloud_id} still has folders; delete them first"
            )));
        }
        let mut batch = Batch::default();
        self.records.delete_cloud(&mut batch, &cloud.id);
        let bindings = self.bindings_going_with(Some(&Resource::Cloud(cloud.id.clone())), None);
        self.put_binding_changes(&mut batch, &bindings);
        let done = self.record(
            &mut batch,
            caller,
            "Delete cloud",
            &cloud.id,
            OperationOutcome::Empty,
        )?;
        self.commit_then(writer, batch, || self.install_binding_changes(bindings))
            .await?;
        // After the delete is applied, so no reader can put the entry back.
        self.cloud_orgs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&cloud.id);
        Ok(done)
    }

    /// Creates a folder in a cloud (empty: the default cloud).
    pub async fn create_folder(
        &self,
        caller: &Caller,
        cloud_id: &str,
        name: &str,
        description: &str,
    ) -> Result<(Folder, Done), LockboxError> {
        validate::resource_name(name)?;
        validate::description("description", description)?;
        let writer = self.write_lock().await;
        let cloud = self.cloud_or_default(cloud_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Cloud(cloud.id.clone()))?,
            Permission::ManageResources,
        )?;
        let mut taken = false;
        for_each_page(
            |token| self.records.folders(&cloud.id, token, 1000),
            |f| {
                taken |= f.name == name;
            },
        )?;
        if taken {
            return Err(LockboxError::AlreadyExists(format!(
                "a folder named {name:?} already exists in cloud {}",
                cloud.id
            )));
        }
        let folder = Folder {
            id: new_id(ids::FOLDER),
            cloud_id: cloud.id,
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: self.now(),
        };
        let mut batch = Batch::default();
        self.records.put_folder(&mut batch, &folder);
        let done = self.record(
            &mut batch,
            caller,
            "Create folder",
            &folder.id,
            OperationOutcome::Folder(folder.clone()),
        )?;
        self.commit(writer, batch).await?;
        Ok((folder, done))
    }

    /// A folder.
    pub fn get_folder(&self, caller: &Caller, folder_id: &str) -> Result<Folder, LockboxError> {
        validate::id("folder_id", folder_id)?;
        let folder = self.folder_or_default(folder_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Folder(folder.id.clone()))?,
            Permission::Get,
        )?;
        Ok(folder)
    }

    /// A cloud's folders (empty: the default cloud), oldest first. Needs the right to read
    /// metadata on the cloud (or above).
    pub fn list_folders(
        &self,
        caller: &Caller,
        cloud_id: &str,
        page_size: u32,
        page_token: &str,
    ) -> Result<Listed<Folder>, LockboxError> {
        validate::page_token(page_token)?;
        let size = validate::page_size(page_size)?;
        let cloud = self.cloud_or_default(cloud_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Cloud(cloud.id.clone()))?,
            Permission::Get,
        )?;
        Ok(self.records.folders(&cloud.id, page_token, size)?)
    }

    /// Deletes a folder that holds no secrets and no service accounts, and the bindings on
    /// it. The default folder stays.
    pub async fn delete_folder(
        &self,
        caller: &Caller,
        folder_id: &str,
    ) -> Result<Done, LockboxError> {
        validate::id("folder_id", folder_id)?;
        let writer = self.write_lock().await;
        let folder = self.folder_or_default(folder_id)?;
        self.authorize(
            caller,
            &self.chain(&Resource::Folder(folder.id.clone()))?,
            Permission::ManageResources,
        )?;
        if folder.id == self.defaults.folder_id {
            return Err(LockboxError::FailedPrecondition(
                "the default folder cannot be deleted".into(),
            ));
        }
        let mut left = Vec::new();
        if self.records.folder_has_secrets(&folder.id)? {
            left.push("secrets");
        }
        if !self
            .records
            .service_accounts_in_folder(&folder.id, "", 1)?
            .items
            .is_empty()
        {
            left.push("service accounts");
        }
        if !left.is_empty() {
            return Err(LockboxError::FailedPrecondition(format!(
                "folder {folder_id} still holds {}; delete them first",
                left.join(" and ")
            )));
        }
        let mut batch = Batch::default();
        self.records.delete_folder(&mut batch, &folder);
        let bindings = self.bindings_going_with(Some(&Resource::Folder(folder.id.clone())), None);
        self.put_binding_changes(&mut batch, &bindings);
        let done = self.record(
            &mut batch,
            caller,
            "Delete folder",
            &folder.id,
            OperationOutcome::Empty,
        )?;
        self.commit_then(writer, batch, || self.install_binding_changes(bindings))
            .await?;
        Ok(done)
    }
}
