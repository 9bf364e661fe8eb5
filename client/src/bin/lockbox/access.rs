//! Access-binding commands shared by `secret`, `resource-manager folder` and
//! `resource-manager cloud`: list, set, add and remove.

use crate::Format;
use crate::io::invalid;
use crate::pages::{PageArgs, collect_pages};
use crate::render::{self, print};
use anyhow::Result;
use lockbox_client::LockboxClient;
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
use lockbox_client::proto::lockbox::LockboxResource;
use serde_json::Value;

/// What to do with a resource's bindings.
pub(crate) enum AccessAction {
    /// List them.
    List,
    /// Replace them all with these `role=R,subject=S` pairs.
    Set(Vec<String>),
    /// Add one.
    Add { role: String, subject: String },
    /// Remove one.
    Remove { role: String, subject: String },
}

fn parse_binding(text: &str) -> Result<AccessBinding> {
    let mut role = None;
    let mut subject = None;
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("role", v)) => role = Some(v.to_owned()),
            Some(("subject", v)) => subject = Some(v.to_owned()),
            _ => {}
        }
    }
    match (role, subject) {
        (Some(role_id), Some(subject)) => Ok(AccessBinding { role_id, subject }),
        _ => Err(invalid(format!(
            "--access-binding: {text:?} must be role=<role>,subject=<subject>"
        ))),
    }
}

pub(crate) async fn run(
    client: &LockboxClient,
    format: Format,
    resource: LockboxResource,
    action: AccessAction,
) -> Result<()> {
    let (action, binding) = match action {
        AccessAction::List => {
            let none = PageArgs {
                page_size: None,
                page_token: String::new(),
            };
            let bindings =
                collect_pages(none, |p| client.list_access_bindings(resource.clone(), p)).await?;
            print(
                format,
                &Value::Array(bindings.iter().map(render::binding).collect()),
            );
            return Ok(());
        }
        AccessAction::Set(pairs) => {
            let bindings = pairs
                .iter()
                .map(|p| parse_binding(p))
                .collect::<Result<Vec<_>>>()?;
            let op = client.set_access_bindings(resource, bindings).await?;
            print(format, &render::operation(&op));
            return Ok(());
        }
        AccessAction::Add { role, subject } => (
            AccessBindingAction::Add,
            AccessBinding {
                role_id: role,
                subject,
            },
        ),
        AccessAction::Remove { role, subject } => (
            AccessBindingAction::Remove,
            AccessBinding {
                role_id: role,
                subject,
            },
        ),
    };
    let op = client
        .update_access_bindings(resource, vec![AccessBindingDelta { action, binding }])
        .await?;
    print(format, &render::operation(&op));
    Ok(())
}

/// `--role` and `--subject` of add/remove.
#[derive(clap::Args)]
pub(crate) struct BindingArgs {
    /// Role, e.g. lockbox.payloadViewer.
    #[arg(long)]
    pub(crate) role: String,
    /// Subject: user:<name>, group:<name>, serviceAccount:<id>, system:allAuthenticatedUsers.
    #[arg(long)]
    pub(crate) subject: String,
}

impl BindingArgs {
    /// Grant this binding.
    pub(crate) fn add(self) -> AccessAction {
        AccessAction::Add {
            role: self.role,
            subject: self.subject,
        }
    }

    /// Revoke this binding.
    pub(crate) fn remove(self) -> AccessAction {
        AccessAction::Remove {
            role: self.role,
            subject: self.subject,
        }
    }
}

/// `--access-binding` of set.
#[derive(clap::Args)]
pub(crate) struct SetArgs {
    /// A binding as role=<role>,subject=<subject> (repeatable); all others are removed.
    #[arg(long = "access-binding", required = true)]
    pub(crate) access_bindings: Vec<String>,
}

/// The four binding commands for a resource named by a positional id.
#[derive(clap::Subcommand)]
pub(crate) enum ByIdCommand {
    /// List the bindings attached directly to it.
    ListAccessBindings {
        /// Id.
        id: String,
    },
    /// Replace all its bindings.
    SetAccessBindings {
        /// Id.
        id: String,
        #[command(flatten)]
        set: SetArgs,
    },
    /// Grant a role on it.
    AddAccessBinding {
        /// Id.
        id: String,
        #[command(flatten)]
        binding: BindingArgs,
    },
    /// Revoke a role on it.
    RemoveAccessBinding {
        /// Id.
        id: String,
        #[command(flatten)]
        binding: BindingArgs,
    },
}

impl ByIdCommand {
    /// The id and the action.
    pub(crate) fn split(self) -> (String, AccessAction) {
        match self {
            ByIdCommand::ListAccessBindings { id } => (id, AccessAction::List),
            ByIdCommand::SetAccessBindings { id, set } => {
                (id, AccessAction::Set(set.access_bindings))
            }
            ByIdCommand::AddAccessBinding { id, binding } => (id, binding.add()),
            ByIdCommand::RemoveAccessBinding { id, binding } => (id, binding.remove()),
        }
    }
}
