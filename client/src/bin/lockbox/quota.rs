//! `lockbox quota …` and `lockbox kms quota …`: the quotas of a cloud in lockboxd and of a
//! folder in lockbox-kms, their limits and usage.

use crate::Format;
use crate::render::print;
use anyhow::Result;
use clap::Subcommand;
use lockbox_client::proto::common::Quota;
use lockbox_client::{KmsClient, LockboxClient};
use serde_json::{Value, json};

#[derive(Subcommand)]
pub(crate) enum QuotaCommand {
    /// List a cloud's quotas with their limits and usage: lockbox.secrets.count (secrets in
    /// the cloud), lockbox.versions.count (versions not destroyed of one secret; the usage
    /// shown is the cloud's most used secret's) and lockbox.payload.size (bytes of keys and
    /// values in one version, checked as each is written). Needs lockbox.auditor or more on
    /// the cloud.
    List {
        /// Cloud id (default: the default cloud).
        #[arg(long, default_value = "")]
        cloud_id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum KmsQuotaCommand {
    /// List a folder's quotas with their limits and usage: kms.keys.count (keys of both
    /// kinds in the folder) and kms.symmetricKeyVersions.count (versions not destroyed of
    /// one key; the usage shown is the folder's most used key's). Needs kms.keys.get
    /// (kms.auditor or more) on the folder.
    List {
        /// Folder id.
        #[arg(long)]
        folder_id: String,
    },
}

/// Quotas as printed.
fn rendered(quotas: &[Quota]) -> Vec<Value> {
    quotas
        .iter()
        .map(|q| {
            json!({
                "name": q.name,
                "per": q.per,
                "limit": q.limit,
                "usage": q.usage,
                "resource": q.resource,
            })
        })
        .collect()
}

pub(crate) async fn run_kms(
    client: &KmsClient,
    format: Format,
    command: KmsQuotaCommand,
) -> Result<()> {
    match command {
        KmsQuotaCommand::List { folder_id } => {
            let quotas = rendered(&client.list_quotas(&folder_id).await?);
            print(format, &json!({ "folder_id": folder_id, "quotas": quotas }));
        }
    }
    Ok(())
}

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    command: QuotaCommand,
) -> Result<()> {
    match command {
        QuotaCommand::List { cloud_id } => {
            let (cloud_id, quotas) = client.list_quotas(&cloud_id).await?;
            let quotas = rendered(&quotas);
            print(format, &json!({ "cloud_id": cloud_id, "quotas": quotas }));
        }
    }
    Ok(())
}
