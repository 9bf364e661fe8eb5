//! `lockbox resource-manager {cloud,folder} …`: the organization > cloud > folder hierarchy.

use crate::Format;
use crate::pages::{PageArgs, collect_pages};
use crate::render::{self, print};
use anyhow::Result;
use clap::Subcommand;
use lockbox_client::LockboxClient;
use lockbox_client::proto::lockbox::LockboxResource;
use serde_json::Value;

#[derive(Subcommand)]
pub(crate) enum ResourceCommand {
    /// Manage clouds.
    #[command(subcommand)]
    Cloud(CloudCommand),
    /// Manage folders.
    #[command(subcommand)]
    Folder(FolderCommand),
}

#[derive(Subcommand)]
pub(crate) enum CloudCommand {
    /// Create a cloud in the default organization.
    Create {
        /// Name: [a-z][-a-z0-9]*.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List clouds.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a cloud.
    Get {
        /// Cloud id.
        id: String,
    },
    /// Delete a cloud that has no folders.
    Delete {
        /// Cloud id.
        id: String,
    },
    /// List the operations recorded on a cloud (creation, access-binding changes), newest
    /// first.
    ListOperations {
        /// Cloud id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    #[command(flatten)]
    Access(crate::access::ByIdCommand),
}

#[derive(Subcommand)]
pub(crate) enum FolderCommand {
    /// Create a folder.
    Create {
        /// Name: [a-z][-a-z0-9]*.
        #[arg(long)]
        name: String,
        /// Cloud (default: the default cloud).
        #[arg(long, default_value = "")]
        cloud_id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a cloud's folders.
    List {
        /// Cloud (default: the default cloud).
        #[arg(long, default_value = "")]
        cloud_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a folder.
    Get {
        /// Folder id.
        id: String,
    },
    /// Delete a folder that holds no secrets.
    Delete {
        /// Folder id.
        id: String,
    },
    /// List the operations recorded on a folder (creation, access-binding changes), newest
    /// first.
    ListOperations {
        /// Folder id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    #[command(flatten)]
    Access(crate::access::ByIdCommand),
}

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    command: ResourceCommand,
) -> Result<()> {
    let value = match command {
        ResourceCommand::Cloud(c) => match c {
            CloudCommand::Create { name, description } => {
                render::operation(&client.create_cloud(&name, &description).await?)
            }
            CloudCommand::List { page } => {
                let clouds = collect_pages(page, |p| client.list_clouds(p)).await?;
                Value::Array(clouds.iter().map(render::cloud).collect())
            }
            CloudCommand::Get { id } => render::cloud(&client.get_cloud(&id).await?),
            CloudCommand::Delete { id } => render::operation(&client.delete_cloud(&id).await?),
            CloudCommand::ListOperations { id, page } => {
                operations(client, LockboxResource::Cloud(id), page).await?
            }
            CloudCommand::Access(c) => {
                let (id, action) = c.split();
                return crate::access::run(client, format, LockboxResource::Cloud(id), action)
                    .await;
            }
        },
        ResourceCommand::Folder(f) => match f {
            FolderCommand::Create {
                name,
                cloud_id,
                description,
            } => render::operation(&client.create_folder(&cloud_id, &name, &description).await?),
            FolderCommand::List { cloud_id, page } => {
                let folders = collect_pages(page, |p| client.list_folders(&cloud_id, p)).await?;
                Value::Array(folders.iter().map(render::folder).collect())
            }
            FolderCommand::Get { id } => render::folder(&client.get_folder(&id).await?),
            FolderCommand::Delete { id } => render::operation(&client.delete_folder(&id).await?),
            FolderCommand::ListOperations { id, page } => {
                operations(client, LockboxResource::Folder(id), page).await?
            }
            FolderCommand::Access(c) => {
                let (id, action) = c.split();
                return crate::access::run(client, format, LockboxResource::Folder(id), action)
                    .await;
            }
        },
    };
    print(format, &value);
    Ok(())
}

/// Every operation recorded on `resource`, rendered.
async fn operations(
    client: &LockboxClient,
    resource: LockboxResource,
    page: PageArgs,
) -> Result<Value> {
    let ops = collect_pages(page, |p| {
        client.list_resource_operations(resource.clone(), p)
    })
    .await?;
    Ok(Value::Array(ops.iter().map(render::operation).collect()))
}
