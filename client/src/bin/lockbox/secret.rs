//! `lockbox secret …` and `lockbox payload get`: secrets, versions and payloads on lockboxd.

use crate::Format;
use crate::access::{self, AccessAction};
use crate::io::{
    MAX_PAYLOAD_INPUT, invalid, parse_duration, parse_labels, read_input, write_output,
};
use crate::pages::PageArgs;
use crate::render::{self, print};
use anyhow::Result;
use clap::{Args, Subcommand};
use lockbox_client::LockboxClient;
use lockbox_client::proto::common::Page;
use lockbox_client::proto::lockbox::{
    AddVersion, CreateSecret, LockboxResource, PasswordPayloadSpecification, PayloadEntryChange,
    UpdateSecret,
};
use serde_json::Value;
use std::path::PathBuf;

/// Which secret: by id, or by name in a folder.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct SecretArg {
    /// Secret id.
    #[arg(long)]
    id: Option<String>,
    /// Secret name (in --folder-id, or the default folder).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
pub(crate) struct FolderArg {
    /// Folder id (default: the daemon's default folder).
    #[arg(long, default_value = "")]
    folder_id: String,
}

#[derive(Args)]
pub(crate) struct PayloadArgs {
    /// Entries as JSON: [{"key":"k","text_value":"v"},{"key":"b","binary_value":"<base64>"}].
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Read the JSON entries from a file; - reads stdin.
    #[arg(long)]
    payload_file: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PasswordArgs {
    /// Generate a password into this entry key.
    #[arg(long)]
    password_key: Option<String>,
    /// Password length (default 36, at most 256).
    #[arg(long, default_value_t = 0, requires = "password_key")]
    password_length: u32,
    /// Leave out A-Z.
    #[arg(long, requires = "password_key")]
    no_uppercase: bool,
    /// Leave out a-z.
    #[arg(long, requires = "password_key")]
    no_lowercase: bool,
    /// Leave out 0-9.
    #[arg(long, requires = "password_key")]
    no_digits: bool,
    /// Leave out punctuation.
    #[arg(long, requires = "password_key")]
    no_punctuation: bool,
    /// Only these punctuation characters.
    #[arg(long, default_value = "", requires = "password_key")]
    included_punctuation: String,
    /// Never these punctuation characters.
    #[arg(long, default_value = "", requires = "password_key")]
    excluded_punctuation: String,
}

impl PasswordArgs {
    fn spec(self) -> Option<PasswordPayloadSpecification> {
        Some(PasswordPayloadSpecification {
            password_key: self.password_key?,
            length: self.password_length,
            include_uppercase: !self.no_uppercase,
            include_lowercase: !self.no_lowercase,
            include_digits: !self.no_digits,
            include_punctuation: !self.no_punctuation,
            included_punctuation: self.included_punctuation,
            excluded_punctuation: self.excluded_punctuation,
        })
    }
}

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
    /// Create a secret, with a first version if --payload or --password-key is given.
    Create {
        /// Name, unique in the folder.
        #[arg(long, default_value = "")]
        name: String,
        #[command(flatten)]
        folder: FolderArg,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// Labels as key=value[,key=value…].
        #[arg(long, default_value = "")]
        labels: String,
        /// lockbox-kms key wrapping the payload keys (default: the daemon's service keyring).
        /// Reading then also needs kms.keys.decrypter on the key. Fixed at creation.
        #[arg(long, default_value = "")]
        kms_key_id: String,
        /// Refuse deletion until this is turned off.
        #[arg(long)]
        deletion_protection: bool,
        /// Description of the first version.
        #[arg(long, default_value = "")]
        version_description: String,
        #[command(flatten)]
        payload: PayloadArgs,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show a secret.
    Get {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
    },
    /// List a folder's secrets.
    List {
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a secret's metadata; only the fields given change.
    Update {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// New name.
        #[arg(long)]
        new_name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// New labels (replacing all).
        #[arg(long)]
        labels: Option<String>,
        /// Turn deletion protection on or off.
        #[arg(long)]
        deletion_protection: Option<bool>,
    },
    /// Delete a secret and all its versions.
    Delete {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
    },
    /// Make the payload readable again.
    Activate {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
    },
    /// Refuse payload reads (metadata stays readable).
    Deactivate {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
    },
    /// Add a version: the base version's entries with these changes. It becomes current.
    AddVersion {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// Description of the version.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        payload: PayloadArgs,
        /// Remove these entry keys (comma-separated).
        #[arg(long, value_delimiter = ',')]
        remove_keys: Vec<String>,
        /// Version to apply the changes to (default: the current version).
        #[arg(long)]
        base_version_id: Option<String>,
    },
    /// List a secret's versions, newest first.
    ListVersions {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Make a version current.
    SetCurrentVersion {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// Version id.
        #[arg(long)]
        version_id: String,
    },
    /// Schedule a version's destruction; until then it stays readable.
    ScheduleVersionDestruction {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// Version id.
        #[arg(long)]
        version_id: String,
        /// How long until destruction (default 7d).
        #[arg(long, value_parser = parse_duration)]
        pending_period: Option<u64>,
    },
    /// Cancel a scheduled destruction.
    CancelVersionDestruction {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// Version id.
        #[arg(long)]
        version_id: String,
    },
    /// List the bindings attached directly to a secret.
    ListAccessBindings {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
    },
    /// Replace all bindings on a secret.
    SetAccessBindings {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        set: crate::access::SetArgs,
    },
    /// Grant a role on a secret.
    AddAccessBinding {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        binding: crate::access::BindingArgs,
    },
    /// Revoke a role on a secret.
    RemoveAccessBinding {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        binding: crate::access::BindingArgs,
    },
    /// List a secret's operations, newest first.
    ListOperations {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum PayloadCommand {
    /// Print a version's entries (default: the current version).
    Get {
        #[command(flatten)]
        secret: SecretArg,
        #[command(flatten)]
        folder: FolderArg,
        /// Version id.
        #[arg(long)]
        version_id: Option<String>,
        /// Print only this entry's raw value.
        #[arg(long)]
        key: Option<String>,
    },
}

/// Parses the JSON entries of --payload / --payload-file.
fn payload_changes(args: PayloadArgs) -> Result<Vec<PayloadEntryChange>> {
    let text = match (args.payload, args.payload_file) {
        (Some(p), _) => zeroize::Zeroizing::new(p.into_bytes()),
        (None, Some(f)) => read_input(&f, MAX_PAYLOAD_INPUT)?,
        (None, None) => return Ok(Vec::new()),
    };
    lockbox_client::payload_json::parse_entries(&text)
        .map_err(|e| invalid(format!("--payload: {e}")))
}

/// Resolves --id or --name (in the folder) to a secret id.
async fn secret_id(
    client: &LockboxClient,
    secret: SecretArg,
    folder: &FolderArg,
) -> Result<String> {
    if let Some(id) = secret.id {
        return Ok(id);
    }
    let name = secret.name.unwrap_or_default();
    let mut token = String::new();
    loop {
        let (secrets, next) = client
            .list_secrets(
                &folder.folder_id,
                Page {
                    page_size: 1000,
                    page_token: token,
                },
            )
            .await?;
        if let Some(s) = secrets.into_iter().find(|s| s.name == name) {
            return Ok(s.id);
        }
        if next.is_empty() {
            return Err(
                lockbox_client::CallError::Server(lockbox_client::proto::Error::new(
                    lockbox_client::proto::ErrorCode::NotFound,
                    format!("no secret named {name:?} in the folder"),
                ))
                .into(),
            );
        }
        token = next;
    }
}

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    command: SecretCommand,
) -> Result<()> {
    use SecretCommand as C;
    let op = match command {
        C::Create {
            name,
            folder,
            description,
            labels,
            kms_key_id,
            deletion_protection,
            version_description,
            payload,
            password,
        } => {
            client
                .create_secret(CreateSecret {
                    folder_id: folder.folder_id,
                    name,
                    description,
                    labels: parse_labels(&labels)?,
                    kms_key_id,
                    version_description,
                    version_payload_entries: payload_changes(payload)?,
                    deletion_protection,
                    password_payload_specification: password.spec(),
                })
                .await?
        }
        C::Get { secret, folder } => {
            let id = secret_id(client, secret, &folder).await?;
            print(format, &render::secret(&client.get_secret(&id).await?));
            return Ok(());
        }
        C::List { folder, page } => {
            let secrets =
                crate::pages::collect_pages(page, |p| client.list_secrets(&folder.folder_id, p))
                    .await?;
            print(
                format,
                &Value::Array(secrets.iter().map(render::secret).collect()),
            );
            return Ok(());
        }
        C::Update {
            secret,
            folder,
            new_name,
            description,
            labels,
            deletion_protection,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            let mut mask = Vec::new();
            for (field, present) in [
                ("name", new_name.is_some()),
                ("description", description.is_some()),
                ("labels", labels.is_some()),
                ("deletion_protection", deletion_protection.is_some()),
            ] {
                if present {
                    mask.push(field.to_owned());
                }
            }
            if mask.is_empty() {
                return Err(invalid(
                    "nothing to update: give at least one of --new-name, --description, --labels, --deletion-protection",
                ));
            }
            client
                .update_secret(UpdateSecret {
                    secret_id: id,
                    update_mask: mask,
                    name: new_name.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    labels: parse_labels(labels.as_deref().unwrap_or(""))?,
                    deletion_protection: deletion_protection.unwrap_or(false),
                    password_payload_specification: None,
                })
                .await?
        }
        C::Delete { secret, folder } => {
            client
                .delete_secret(&secret_id(client, secret, &folder).await?)
                .await?
        }
        C::Activate { secret, folder } => {
            client
                .activate_secret(&secret_id(client, secret, &folder).await?)
                .await?
        }
        C::Deactivate { secret, folder } => {
            client
                .deactivate_secret(&secret_id(client, secret, &folder).await?)
                .await?
        }
        C::AddVersion {
            secret,
            folder,
            description,
            payload,
            remove_keys,
            base_version_id,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            let mut changes = payload_changes(payload)?;
            changes.extend(
                remove_keys
                    .into_iter()
                    .map(|key| PayloadEntryChange { key, value: None }),
            );
            client
                .add_version(AddVersion {
                    secret_id: id,
                    description,
                    payload_entries: changes,
                    base_version_id,
                })
                .await?
        }
        C::ListVersions {
            secret,
            folder,
            page,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            let versions =
                crate::pages::collect_pages(page, |p| client.list_versions(&id, p)).await?;
            print(
                format,
                &Value::Array(versions.iter().map(render::secret_version).collect()),
            );
            return Ok(());
        }
        C::SetCurrentVersion {
            secret,
            folder,
            version_id,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            client.set_current_version(&id, &version_id).await?
        }
        C::ScheduleVersionDestruction {
            secret,
            folder,
            version_id,
            pending_period,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            client
                .schedule_version_destruction(&id, &version_id, pending_period)
                .await?
        }
        C::CancelVersionDestruction {
            secret,
            folder,
            version_id,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            client.cancel_version_destruction(&id, &version_id).await?
        }
        C::ListAccessBindings { secret, folder } => {
            let id = secret_id(client, secret, &folder).await?;
            return access::run(
                client,
                format,
                LockboxResource::Secret(id),
                AccessAction::List,
            )
            .await;
        }
        C::SetAccessBindings {
            secret,
            folder,
            set,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            let action = AccessAction::Set(set.access_bindings);
            return access::run(client, format, LockboxResource::Secret(id), action).await;
        }
        C::AddAccessBinding {
            secret,
            folder,
            binding,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            return access::run(client, format, LockboxResource::Secret(id), binding.add()).await;
        }
        C::RemoveAccessBinding {
            secret,
            folder,
            binding,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            return access::run(
                client,
                format,
                LockboxResource::Secret(id),
                binding.remove(),
            )
            .await;
        }
        C::ListOperations {
            secret,
            folder,
            page,
        } => {
            let id = secret_id(client, secret, &folder).await?;
            let ops = crate::pages::collect_pages(page, |p| client.list_operations(&id, p)).await?;
            print(
                format,
                &Value::Array(ops.iter().map(render::operation).collect()),
            );
            return Ok(());
        }
    };
    print(format, &render::operation(&op));
    Ok(())
}

pub(crate) async fn payload(
    client: &LockboxClient,
    format: Format,
    command: PayloadCommand,
) -> Result<()> {
    let PayloadCommand::Get {
        secret,
        folder,
        version_id,
        key,
    } = command;
    let payload = match (secret.id, secret.name) {
        (Some(id), _) => client.get_payload(&id, version_id.as_deref()).await?,
        (None, name) => {
            client
                .get_payload_by_name(
                    &folder.folder_id,
                    &name.unwrap_or_default(),
                    version_id.as_deref(),
                )
                .await?
        }
    };
    if let Some(key) = key {
        let value = payload.get(&key).ok_or_else(|| {
            lockbox_client::CallError::Server(lockbox_client::proto::Error::new(
                lockbox_client::proto::ErrorCode::NotFound,
                format!("version {} has no entry {key:?}", payload.version_id()),
            ))
        })?;
        return write_output(std::path::Path::new("-"), value.bytes());
    }
    print(
        format,
        &serde_json::json!({
            "secret_id": payload.secret_id(),
            "version_id": payload.version_id(),
            "entries": render::entries(payload.entries()),
        }),
    );
    Ok(())
}
