//! `lockbox kms …`: symmetric keys, symmetric crypto, signature keys and access bindings.

use crate::Format;
use crate::io::{
    MAX_KMS_INPUT, invalid, parse_duration, parse_hex, parse_labels, read_input, write_output,
};
use crate::pages::{PageArgs, collect_pages};
use crate::render::{self, b64, print};
use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
use lockbox_client::proto::kms::{
    CreateAsymmetricSignatureKey, CreateSymmetricKey, KeyStatus, ResourceRef, SignatureAlgorithm,
    SymmetricAlgorithm, UpdateSymmetricKey,
};
use lockbox_client::{KmsClient, LockboxClient};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum KmsCommand {
    /// Manage symmetric keys and their versions.
    #[command(subcommand)]
    SymmetricKey(SymmetricKeyCommand),
    /// Encrypt, decrypt, re-encrypt and generate data keys.
    #[command(subcommand)]
    SymmetricCrypto(SymmetricCryptoCommand),
    /// Manage asymmetric signature keys (ECDSA P-256).
    #[command(subcommand)]
    AsymmetricSignatureKey(SignatureKeyCommand),
    /// Sign with asymmetric signature keys.
    #[command(subcommand)]
    AsymmetricSignatureCrypto(SignatureCryptoCommand),
    /// List, add and remove kms.* role bindings on the root, a folder or a key.
    #[command(subcommand)]
    AccessBinding(AccessBindingCommand),
    /// See a folder's quotas and how much of them is used.
    #[command(subcommand)]
    Quota(crate::quota::KmsQuotaCommand),
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum AlgorithmArg {
    /// AES-128-GCM.
    #[value(name = "aes-128")]
    Aes128,
    /// AES-192-GCM.
    #[value(name = "aes-192")]
    Aes192,
    /// AES-256-GCM.
    #[value(name = "aes-256")]
    Aes256,
}

impl From<AlgorithmArg> for SymmetricAlgorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Aes128 => SymmetricAlgorithm::Aes128,
            AlgorithmArg::Aes192 => SymmetricAlgorithm::Aes192,
            AlgorithmArg::Aes256 => SymmetricAlgorithm::Aes256,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StatusArg {
    /// Usable.
    Active,
    /// Refuses crypto operations.
    Inactive,
}

#[derive(Args)]
pub(crate) struct KeyMetaArgs {
    /// Name: [a-z][-a-z0-9]*, at most 100 characters.
    #[arg(long, default_value = "")]
    name: String,
    /// Description, at most 1024 characters.
    #[arg(long, default_value = "")]
    description: String,
    /// Labels as key=value[,key=value…].
    #[arg(long, default_value = "")]
    labels: String,
    /// Refuse deletion until this is turned off.
    #[arg(long)]
    deletion_protection: bool,
}

#[derive(Args)]
pub(crate) struct RewrapArgs {
    /// Key id.
    id: String,
    /// Data keys per call to lockboxd (1 to 10000).
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// Pause between batches, e.g. 200ms or 1s, to spare a busy lockbox-kms.
    #[arg(long, value_parser = humantime::parse_duration)]
    pause: Option<std::time::Duration>,
}

#[derive(Subcommand)]
pub(crate) enum SymmetricKeyCommand {
    /// Create a symmetric key with one active, primary version.
    Create {
        /// Folder to create the key in.
        #[arg(long)]
        folder_id: String,
        #[command(flatten)]
        meta: KeyMetaArgs,
        /// Encryption algorithm.
        #[arg(long, value_enum, default_value = "aes-256")]
        default_algorithm: AlgorithmArg,
        /// Rotate automatically after this long (at least 24h), e.g. 30d.
        #[arg(long, value_parser = parse_duration)]
        rotation_period: Option<u64>,
    },
    /// Show a symmetric key.
    Get {
        /// Key id.
        id: String,
    },
    /// List a folder's symmetric keys.
    List {
        /// Folder id.
        #[arg(long)]
        folder_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a symmetric key; only the fields given change.
    Update {
        /// Key id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New description.
        #[arg(long)]
        description: Option<String>,
        /// New labels (replacing all) as key=value[,key=value…].
        #[arg(long)]
        labels: Option<String>,
        /// New status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// New algorithm for future versions.
        #[arg(long, value_enum)]
        default_algorithm: Option<AlgorithmArg>,
        /// New automatic rotation period, e.g. 30d.
        #[arg(long, value_parser = parse_duration, conflicts_with = "no_rotation")]
        rotation_period: Option<u64>,
        /// Turn automatic rotation off.
        #[arg(long)]
        no_rotation: bool,
        /// Turn deletion protection on or off.
        #[arg(long)]
        deletion_protection: Option<bool>,
    },
    /// Delete a symmetric key. Everything encrypted with it becomes unrecoverable.
    Delete {
        /// Key id.
        id: String,
    },
    /// Create a new version and make it primary.
    Rotate {
        /// Key id.
        id: String,
    },
    /// Re-encrypt, under the key's primary version, the data keys of every lockboxd secret
    /// version an older version of the key wraps, so the old versions can be destroyed
    /// (lockbox-kms refuses to destroy a version lockboxd still keeps data under). Asks
    /// lockboxd (--socket), which has lockbox-kms re-encrypt each data key on your behalf:
    /// you need lockbox.service.manage (admin) on the organization, and kms.keys encrypt
    /// and decrypt rights on the key. Work is kept batch by batch: after an interruption,
    /// run it again to go on.
    Rewrap(RewrapArgs),
    /// List a key's versions, newest first.
    ListVersions {
        /// Key id.
        id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Make a version primary.
    SetPrimaryVersion {
        /// Key id.
        id: String,
        /// Version id.
        #[arg(long)]
        version_id: String,
    },
    /// Schedule a version's destruction; after it, its ciphertexts are unrecoverable.
    ScheduleVersionDestruction {
        /// Key id.
        id: String,
        /// Version id.
        #[arg(long)]
        version_id: String,
        /// How long until destruction (at least 1d; default 7d).
        #[arg(long, value_parser = parse_duration)]
        pending_period: Option<u64>,
        /// Destroy it even though lockboxd still keeps data under it (lockbox-kms refuses
        /// otherwise): the secrets versions it wraps become unrecoverable.
        #[arg(long)]
        release_held_data: bool,
    },
    /// Cancel a scheduled destruction.
    CancelVersionDestruction {
        /// Key id.
        id: String,
        /// Version id.
        #[arg(long)]
        version_id: String,
    },
}

#[derive(Args)]
pub(crate) struct AadArgs {
    /// Additional authenticated data; the same value is needed to decrypt.
    #[arg(long, default_value = "")]
    aad_context: String,
}

#[derive(Subcommand)]
pub(crate) enum SymmetricCryptoCommand {
    /// Encrypt a plaintext of at most 32 KiB.
    Encrypt {
        /// Key id.
        #[arg(long)]
        id: String,
        /// Key version (default: primary).
        #[arg(long)]
        version_id: Option<String>,
        #[command(flatten)]
        aad: AadArgs,
        /// File with the plaintext; - reads stdin.
        #[arg(long)]
        plaintext_file: PathBuf,
        /// Where to write the ciphertext; - writes raw bytes to stdout. Without it the
        /// result is printed with the ciphertext in base64.
        #[arg(long)]
        ciphertext_file: Option<PathBuf>,
    },
    /// Decrypt a ciphertext.
    Decrypt {
        /// Key id.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        aad: AadArgs,
        /// File with the ciphertext; - reads stdin.
        #[arg(long)]
        ciphertext_file: PathBuf,
        /// Where to write the plaintext (mode 0600); default - (stdout).
        #[arg(long, default_value = "-")]
        plaintext_file: PathBuf,
    },
    /// Re-encrypt a ciphertext under another key without revealing the plaintext.
    Reencrypt {
        /// Destination key id.
        #[arg(long)]
        id: String,
        /// Destination version (default: primary).
        #[arg(long)]
        version_id: Option<String>,
        #[command(flatten)]
        aad: AadArgs,
        /// Key the ciphertext was made with.
        #[arg(long)]
        source_key_id: String,
        /// The aad_context the ciphertext was made with.
        #[arg(long, default_value = "")]
        source_aad_context: String,
        /// File with the ciphertext; - reads stdin.
        #[arg(long)]
        ciphertext_file: PathBuf,
        /// Where to write the new ciphertext; - for stdout. Without it the result is printed
        /// with the ciphertext in base64.
        #[arg(long)]
        new_ciphertext_file: Option<PathBuf>,
    },
    /// Generate a data key for envelope encryption.
    GenerateDataKey {
        /// Key id.
        #[arg(long)]
        id: String,
        /// Key version (default: primary).
        #[arg(long)]
        version_id: Option<String>,
        #[command(flatten)]
        aad: AadArgs,
        /// Data key size.
        #[arg(long, value_enum, default_value = "aes-256")]
        data_key_spec: AlgorithmArg,
        /// Return only the encrypted data key.
        #[arg(long)]
        skip_plaintext: bool,
        /// Where to write the plaintext data key (mode 0600).
        #[arg(long)]
        data_key_plaintext_file: Option<PathBuf>,
        /// Where to write the encrypted data key.
        #[arg(long)]
        data_key_ciphertext_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum SignatureKeyCommand {
    /// Create an ECDSA P-256 signature key.
    Create {
        /// Folder to create the key in.
        #[arg(long)]
        folder_id: String,
        #[command(flatten)]
        meta: KeyMetaArgs,
    },
    /// Show a signature key.
    Get {
        /// Key id.
        id: String,
    },
    /// List a folder's signature keys.
    List {
        /// Folder id.
        #[arg(long)]
        folder_id: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Print the public key as PEM (SubjectPublicKeyInfo), for `openssl dgst -verify`.
    GetPublicKey {
        /// Key id.
        id: String,
        /// Write the PEM here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum SignatureCryptoCommand {
    /// Sign a message; the signature is DER-encoded ECDSA.
    Sign {
        /// Key id.
        #[arg(long)]
        id: String,
        /// File with the message; - reads stdin.
        #[arg(long)]
        message_file: PathBuf,
        /// Where to write the DER signature; - for stdout. Without it the signature is
        /// printed in base64.
        #[arg(long)]
        signature_file: Option<PathBuf>,
    },
    /// Sign a SHA-256 digest.
    SignHash {
        /// The digest in hex (64 digits).
        #[arg(long)]
        hash: String,
        /// Key id.
        #[arg(long)]
        id: String,
        /// Where to write the DER signature; - for stdout.
        #[arg(long)]
        signature_file: Option<PathBuf>,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ResourceArgs {
    /// Bindings on a key (symmetric or signature).
    #[arg(long)]
    key_id: Option<String>,
    /// Bindings on a folder, inherited by its keys.
    #[arg(long)]
    folder_id: Option<String>,
    /// Bindings on the KMS root, inherited by everything.
    #[arg(long)]
    root: bool,
}

impl ResourceArgs {
    fn resource(self) -> ResourceRef {
        match (self.key_id, self.folder_id) {
            (Some(k), _) => ResourceRef::Key(k),
            (_, Some(f)) => ResourceRef::Folder(f),
            _ => ResourceRef::Root,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum AccessBindingCommand {
    /// List bindings attached directly to a resource.
    List {
        #[command(flatten)]
        resource: ResourceArgs,
    },
    /// Grant a role to a subject on a resource.
    Add {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Role, e.g. kms.keys.encrypterDecrypter.
        #[arg(long)]
        role: String,
        /// Subject: user:<name>, group:<name>, serviceAccount:<id>, system:allAuthenticatedUsers.
        #[arg(long)]
        subject: String,
    },
    /// Revoke a role from a subject on a resource.
    Remove {
        #[command(flatten)]
        resource: ResourceArgs,
        /// Role.
        #[arg(long)]
        role: String,
        /// Subject.
        #[arg(long)]
        subject: String,
    },
}

/// `kms symmetric-key rewrap`: calls lockboxd until no data key is left under an older
/// version, reporting progress on standard error.
pub(crate) async fn rewrap(client: &LockboxClient, format: Format, args: RewrapArgs) -> Result<()> {
    let mut total = 0;
    loop {
        let (rewrapped, remaining) = client.rewrap_data_keys(&args.id, args.batch).await?;
        total += rewrapped;
        if remaining == 0 {
            break;
        }
        eprintln!(
            "lockbox: rewrapped {total} data keys of {}, {remaining} to go",
            args.id
        );
        if let Some(pause) = args.pause {
            tokio::time::sleep(pause).await;
        }
    }
    print(
        format,
        &json!({ "kms_key_id": args.id, "rewrapped_data_keys": total }),
    );
    Ok(())
}

pub(crate) async fn run(socket: &Path, format: Format, command: KmsCommand) -> Result<()> {
    let client = KmsClient::connect(socket).await?;
    match command {
        KmsCommand::SymmetricKey(c) => symmetric_key(&client, format, c).await,
        KmsCommand::SymmetricCrypto(c) => symmetric_crypto(&client, format, c).await,
        KmsCommand::AsymmetricSignatureKey(c) => signature_key(&client, format, c).await,
        KmsCommand::AsymmetricSignatureCrypto(c) => signature_crypto(&client, format, c).await,
        KmsCommand::AccessBinding(c) => access_binding(&client, format, c).await,
        KmsCommand::Quota(c) => crate::quota::run_kms(&client, format, c).await,
    }
}

async fn symmetric_key(
    client: &KmsClient,
    format: Format,
    command: SymmetricKeyCommand,
) -> Result<()> {
    use SymmetricKeyCommand as C;
    let key = match command {
        C::Create {
            folder_id,
            meta,
            default_algorithm,
            rotation_period,
        } => {
            client
                .create_symmetric_key(CreateSymmetricKey {
                    folder_id,
                    name: meta.name,
                    description: meta.description,
                    labels: parse_labels(&meta.labels)?,
                    default_algorithm: default_algorithm.into(),
                    rotation_period,
                    deletion_protection: meta.deletion_protection,
                })
                .await?
        }
        C::Get { id } => client.get_symmetric_key(&id).await?,
        C::List { folder_id, page } => {
            let keys = collect_pages(page, |p| client.list_symmetric_keys(&folder_id, p)).await?;
            print(
                format,
                &Value::Array(keys.iter().map(render::symmetric_key).collect()),
            );
            return Ok(());
        }
        C::Update {
            id,
            name,
            description,
            labels,
            status,
            default_algorithm,
            rotation_period,
            no_rotation,
            deletion_protection,
        } => {
            let mut mask = Vec::new();
            let mut set = |field: &str, present: bool| {
                if present {
                    mask.push(field.to_owned());
                }
            };
            set("name", name.is_some());
            set("description", description.is_some());
            set("labels", labels.is_some());
            set("status", status.is_some());
            set("default_algorithm", default_algorithm.is_some());
            set("rotation_period", rotation_period.is_some() || no_rotation);
            set("deletion_protection", deletion_protection.is_some());
            if mask.is_empty() {
                return Err(invalid(
                    "nothing to update: give at least one of --name, --description, --labels, \
                     --status, --default-algorithm, --rotation-period, --no-rotation, \
                     --deletion-protection",
                ));
            }
            client
                .update_symmetric_key(UpdateSymmetricKey {
                    key_id: id,
                    update_mask: mask,
                    name: name.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    labels: parse_labels(labels.as_deref().unwrap_or(""))?,
                    status: match status {
                        Some(StatusArg::Inactive) => KeyStatus::Inactive,
                        _ => KeyStatus::Active,
                    },
                    default_algorithm: default_algorithm.unwrap_or(AlgorithmArg::Aes256).into(),
                    rotation_period,
                    deletion_protection: deletion_protection.unwrap_or(false),
                })
                .await?
        }
        C::Delete { id } => {
            client.delete_symmetric_key(&id).await?;
            print(format, &json!({ "deleted": id }));
            return Ok(());
        }
        C::Rotate { id } => client.rotate(&id).await?,
        C::Rewrap(_) => anyhow::bail!("rewrap is answered by lockboxd, not lockbox-kms"),
        C::ListVersions { id, page } => {
            let versions = collect_pages(page, |p| client.list_versions(&id, p)).await?;
            print(
                format,
                &Value::Array(versions.iter().map(render::version).collect()),
            );
            return Ok(());
        }
        C::SetPrimaryVersion { id, version_id } => {
            client.set_primary_version(&id, &version_id).await?
        }
        C::ScheduleVersionDestruction {
            id,
            version_id,
            pending_period,
            release_held_data,
        } => {
            if release_held_data {
                client.release_holds(&id, &version_id).await?;
            }
            let v = client
                .schedule_version_destruction(&id, &version_id, pending_period)
                .await?;
            print(format, &render::version(&v));
            return Ok(());
        }
        C::CancelVersionDestruction { id, version_id } => {
            let v = client.cancel_version_destruction(&id, &version_id).await?;
            print(format, &render::version(&v));
            return Ok(());
        }
    };
    print(format, &render::symmetric_key(&key));
    Ok(())
}

/// Writes binary output to `path` when given, else prints `fields` plus the bytes in base64.
fn emit_binary(
    format: Format,
    path: Option<&Path>,
    bytes: &[u8],
    field: &str,
    mut fields: Value,
) -> Result<()> {
    match path {
        Some(p) => write_output(p, bytes),
        None => {
            fields[field] = json!(b64(bytes));
            print(format, &fields);
            Ok(())
        }
    }
}

async fn symmetric_crypto(
    client: &KmsClient,
    format: Format,
    command: SymmetricCryptoCommand,
) -> Result<()> {
    use SymmetricCryptoCommand as C;
    match command {
        C::Encrypt {
            id,
            version_id,
            aad,
            plaintext_file,
            ciphertext_file,
        } => {
            let plaintext = read_input(&plaintext_file, MAX_KMS_INPUT)?;
            let c = client
                .encrypt(
                    &id,
                    version_id.as_deref(),
                    aad.aad_context.as_bytes(),
                    &plaintext,
                )
                .await?;
            emit_binary(
                format,
                ciphertext_file.as_deref(),
                &c.ciphertext,
                "ciphertext",
                json!({ "key_id": c.key_id, "version_id": c.version_id }),
            )
        }
        C::Decrypt {
            id,
            aad,
            ciphertext_file,
            plaintext_file,
        } => {
            let ciphertext = read_ciphertext(&ciphertext_file)?;
            let p = client
                .decrypt(&id, aad.aad_context.as_bytes(), &ciphertext)
                .await?;
            write_output(&plaintext_file, p.plaintext.expose())
        }
        C::Reencrypt {
            id,
            version_id,
            aad,
            source_key_id,
            source_aad_context,
            ciphertext_file,
            new_ciphertext_file,
        } => {
            let ciphertext = read_ciphertext(&ciphertext_file)?;
            let r = client
                .re_encrypt(
                    &id,
                    version_id.as_deref(),
                    aad.aad_context.as_bytes(),
                    &source_key_id,
                    source_aad_context.as_bytes(),
                    &ciphertext,
                )
                .await?;
            emit_binary(
                format,
                new_ciphertext_file.as_deref(),
                &r.ciphertext.ciphertext,
                "ciphertext",
                json!({
                    "key_id": r.ciphertext.key_id,
                    "version_id": r.ciphertext.version_id,
                    "source_key_id": r.source_key_id,
                    "source_version_id": r.source_version_id,
                }),
            )
        }
        C::GenerateDataKey {
            id,
            version_id,
            aad,
            data_key_spec,
            skip_plaintext,
            data_key_plaintext_file,
            data_key_ciphertext_file,
        } => {
            let dk = client
                .generate_data_key(
                    &id,
                    version_id.as_deref(),
                    aad.aad_context.as_bytes(),
                    data_key_spec.into(),
                    skip_plaintext,
                )
                .await?;
            let mut out = json!({ "key_id": dk.key_id, "version_id": dk.version_id });
            match &data_key_ciphertext_file {
                Some(p) => write_output(p, &dk.ciphertext)?,
                None => out["data_key_ciphertext"] = json!(b64(&dk.ciphertext)),
            }
            if let Some(plain) = &dk.plaintext {
                match &data_key_plaintext_file {
                    Some(p) => write_output(p, plain.expose())?,
                    None => out["data_key_plaintext"] = json!(b64(plain.expose())),
                }
            }
            print(format, &out);
            Ok(())
        }
    }
}

/// Reads a ciphertext file: raw bytes, or base64 text as the CLI prints it.
fn read_ciphertext(path: &Path) -> Result<Vec<u8>> {
    use base64::Engine;
    let raw = read_input(path, MAX_KMS_INPUT)?;
    let trimmed = std::str::from_utf8(&raw).ok().map(str::trim);
    if let Some(text) = trimmed
        && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text)
    {
        return Ok(decoded);
    }
    Ok(raw.to_vec())
}

async fn signature_key(
    client: &KmsClient,
    format: Format,
    command: SignatureKeyCommand,
) -> Result<()> {
    use SignatureKeyCommand as C;
    let key = match command {
        C::Create { folder_id, meta } => {
            client
                .create_signature_key(CreateAsymmetricSignatureKey {
                    folder_id,
                    name: meta.name,
                    description: meta.description,
                    labels: parse_labels(&meta.labels)?,
                    signature_algorithm: SignatureAlgorithm::EcdsaNistP256Sha256,
                    deletion_protection: meta.deletion_protection,
                })
                .await?
        }
        C::Get { id } => client.get_signature_key(&id).await?,
        C::List { folder_id, page } => {
            let keys = collect_pages(page, |p| client.list_signature_keys(&folder_id, p)).await?;
            print(
                format,
                &Value::Array(keys.iter().map(render::signature_key).collect()),
            );
            return Ok(());
        }
        C::GetPublicKey { id, output } => {
            let pem = client.get_public_key(&id).await?;
            match (output, format) {
                (Some(path), _) => write_output(&path, pem.as_bytes())?,
                (None, Format::Json) => print(format, &json!({ "key_id": id, "public_key": pem })),
                (None, Format::Text) => print!("{pem}"),
            }
            return Ok(());
        }
    };
    print(format, &render::signature_key(&key));
    Ok(())
}

async fn signature_crypto(
    client: &KmsClient,
    format: Format,
    command: SignatureCryptoCommand,
) -> Result<()> {
    use SignatureCryptoCommand as C;
    let (id, signature, path) = match command {
        C::Sign {
            id,
            message_file,
            signature_file,
        } => {
            let message = read_input(&message_file, MAX_KMS_INPUT)?;
            let sig = client.sign(&id, &message).await?;
            (id, sig, signature_file)
        }
        C::SignHash {
            hash,
            id,
            signature_file,
        } => {
            let digest = parse_hex(&hash)?;
            let sig = client.sign_hash(&id, &digest).await?;
            (id, sig, signature_file)
        }
    };
    emit_binary(
        format,
        path.as_deref(),
        &signature,
        "signature",
        json!({ "key_id": id }),
    )
}

async fn access_binding(
    client: &KmsClient,
    format: Format,
    command: AccessBindingCommand,
) -> Result<()> {
    use AccessBindingCommand as C;
    let (resource, action, binding) = match command {
        C::List { resource } => {
            let resource = resource.resource();
            let bindings = collect_pages(
                PageArgs {
                    page_size: None,
                    page_token: String::new(),
                },
                |p| client.list_access_bindings(resource.clone(), p),
            )
            .await?;
            print(
                format,
                &Value::Array(bindings.iter().map(render::binding).collect()),
            );
            return Ok(());
        }
        C::Add {
            resource,
            role,
            subject,
        } => (
            resource,
            AccessBindingAction::Add,
            AccessBinding {
                role_id: role,
                subject,
            },
        ),
        C::Remove {
            resource,
            role,
            subject,
        } => (
            resource,
            AccessBindingAction::Remove,
            AccessBinding {
                role_id: role,
                subject,
            },
        ),
    };
    let out = json!({
        "action": if action == AccessBindingAction::Add { "ADD" } else { "REMOVE" },
        "role_id": binding.role_id,
        "subject": binding.subject,
    });
    client
        .update_access_bindings(
            resource.resource(),
            vec![AccessBindingDelta { action, binding }],
        )
        .await?;
    print(format, &out);
    Ok(())
}
