//! `lockbox admin …`: maintenance of lockboxd itself.

use crate::Format;
use crate::render::print;
use anyhow::Result;
use clap::Subcommand;
use lockbox_client::LockboxClient;
use serde_json::json;

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// Wrap lockboxd's service keyring under its KMS key's primary version now (lockboxd
    /// also does it at every start and every keyring_rewrap_interval). Run it after
    /// rotating that key and before destroying the old version. Needs
    /// lockbox.service.manage (admin) on the organization.
    RewrapKeyring,
}

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    command: AdminCommand,
) -> Result<()> {
    match command {
        AdminCommand::RewrapKeyring => {
            let (kms_key_id, from_version_id, version_id) = client.rewrap_keyring().await?;
            print(
                format,
                &json!({
                    "kms_key_id": kms_key_id,
                    "from_version_id": from_version_id,
                    "version_id": version_id,
                }),
            );
        }
    }
    Ok(())
}
