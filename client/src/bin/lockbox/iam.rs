//! `lockbox iam …`: service accounts and their authorized keys.

use crate::Format;
use crate::io::write_output;
use crate::pages::{PageArgs, collect_pages};
use crate::render::{print, time};
use anyhow::Result;
use clap::Subcommand;
use lockbox_client::LockboxClient;
use lockbox_client::proto::lockbox::{ServiceAccount, ServiceAccountKey};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum IamCommand {
    /// Manage service accounts: identities for programs.
    #[command(subcommand)]
    ServiceAccount(AccountCommand),
    /// Manage service accounts' authorized keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create a service account; grant it roles with add-access-binding and the subject
    /// serviceAccount:<id>.
    Create {
        /// Name: [a-z][-a-z0-9]*.
        #[arg(long)]
        name: String,
        /// Folder (default: the default folder).
        #[arg(long, default_value = "")]
        folder_id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List a folder's service accounts.
    List {
        /// Folder (default: the default folder).
        #[arg(long, default_value = "")]
        folder_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a service account.
    Get {
        /// Id.
        id: String,
    },
    /// Delete a service account and its keys.
    Delete {
        /// Id.
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a key and write the key file (with the private key, shown only this once).
    /// Use it with `lockbox --sa-key FILE …`.
    Create {
        /// The service account.
        #[arg(long)]
        service_account_id: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// Where to write the key file (mode 0600); default - (stdout).
        #[arg(long, default_value = "-")]
        output: PathBuf,
    },
    /// List a service account's keys.
    List {
        /// The service account.
        #[arg(long)]
        service_account_id: String,
    },
    /// Delete a key; tokens signed with it are refused from then on.
    Delete {
        /// The service account.
        #[arg(long)]
        service_account_id: String,
        /// Key id.
        id: String,
    },
}

fn account(a: &ServiceAccount) -> Value {
    json!({
        "id": a.id,
        "folder_id": a.folder_id,
        "created_at": time(a.created_at),
        "name": a.name,
        "description": a.description,
    })
}

fn key(k: &ServiceAccountKey) -> Value {
    json!({
        "id": k.id,
        "service_account_id": k.service_account_id,
        "created_at": time(k.created_at),
        "description": k.description,
        "key_algorithm": "ECDSA_P256",
    })
}

pub(crate) async fn run(client: &LockboxClient, format: Format, command: IamCommand) -> Result<()> {
    let value = match command {
        IamCommand::ServiceAccount(c) => match c {
            AccountCommand::Create {
                name,
                folder_id,
                description,
            } => account(
                &client
                    .create_service_account(&folder_id, &name, &description)
                    .await?,
            ),
            AccountCommand::List { folder_id, page } => {
                let all =
                    collect_pages(page, |p| client.list_service_accounts(&folder_id, p)).await?;
                Value::Array(all.iter().map(account).collect())
            }
            AccountCommand::Get { id } => account(&client.get_service_account(&id).await?),
            AccountCommand::Delete { id } => {
                client.delete_service_account(&id).await?;
                json!({ "deleted": id })
            }
        },
        IamCommand::Key(c) => match c {
            KeyCommand::Create {
                service_account_id,
                description,
                output,
            } => {
                let file = client
                    .create_service_account_key(&service_account_id, &description)
                    .await?;
                let text = zeroize::Zeroizing::new(serde_json::to_string_pretty(&file)?);
                return write_output(&output, text.as_bytes());
            }
            KeyCommand::List { service_account_id } => {
                let keys = client
                    .list_service_account_keys(&service_account_id)
                    .await?;
                Value::Array(keys.iter().map(key).collect())
            }
            KeyCommand::Delete {
                service_account_id,
                id,
            } => {
                client
                    .delete_service_account_key(&service_account_id, &id)
                    .await?;
                json!({ "deleted": id })
            }
        },
    };
    print(format, &value);
    Ok(())
}
