//! `lockbox quota …`: a cloud's quotas, their limits and usage.

use crate::Format;
use crate::render::print;
use anyhow::Result;
use clap::Subcommand;
use lockbox_client::LockboxClient;
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

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    command: QuotaCommand,
) -> Result<()> {
    match command {
        QuotaCommand::List { cloud_id } => {
            let (cloud_id, quotas) = client.list_quotas(&cloud_id).await?;
            let quotas: Vec<Value> = quotas
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
                .collect();
            print(format, &json!({ "cloud_id": cloud_id, "quotas": quotas }));
        }
    }
    Ok(())
}
