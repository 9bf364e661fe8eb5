//! `lockbox audit …`: checking the audit trails of lockboxd and lockbox-kms.

use crate::Format;
use crate::io::{explained, invalid};
use crate::render::print;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use lockbox_client::KmsClient;
use lockbox_rpc::audit::{SignedHead, Verified, signature_keys, verify};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check an audit trail: its hash chain, and the signatures of its chain head by
    /// lockbox-kms, reporting the first place either breaks and how far the signatures
    /// vouch for it. Give the files oldest first (audit.jsonl.2 audit.jsonl.1
    /// audit.jsonl); a trail whose older files were removed verifies from its first chain
    /// line on. The public keys are read from lockbox-kms (kms.asymmetricSignatureKeys.
    /// publicKeyViewer on the key) unless given with --public-key.
    Verify {
        /// A public key (PEM, as `lockbox kms asymmetric-signature-key get-public-key`
        /// prints it) to check signatures with, instead of asking lockbox-kms; repeat for
        /// several. A signature by none of them breaks the trail.
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
        /// The trail's files, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub(crate) async fn run(kms_socket: &Path, format: Format, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { public_keys, files } => {
            verify_files(kms_socket, format, &public_keys, &files).await
        }
    }
}

/// Where the public keys come from.
enum Keys {
    /// Given on the command line: a signature must hold under one of them.
    Given(Vec<VerifyingKey>),
    /// Read from lockbox-kms, by key id.
    Fetched(BTreeMap<String, VerifyingKey>),
}

impl Keys {
    fn check(&self, signed: &SignedHead<'_>) -> Result<(), String> {
        let signature = Signature::from_der(signed.signature)
            .map_err(|_| "it is not a DER ECDSA signature".to_owned())?;
        let message = signed.message.as_bytes();
        let holds = |key: &VerifyingKey| key.verify(message, &signature).is_ok();
        let ok = match self {
            Self::Given(keys) => keys.iter().any(holds),
            Self::Fetched(keys) => keys.get(signed.key_id).is_some_and(holds),
        };
        if ok {
            Ok(())
        } else {
            Err("it does not verify under the key's public key".into())
        }
    }
}

fn parse_public_key(pem: &str, from: &str) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|e| invalid(format!("{from} is not a P-256 public key in PEM: {e}")))
}

async fn verify_files(
    kms_socket: &Path,
    format: Format,
    public_keys: &[PathBuf],
    files: &[PathBuf],
) -> Result<()> {
    let mut texts = Vec::with_capacity(files.len());
    for f in files {
        texts.push(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?);
    }
    let lines = || texts.iter().flat_map(|t| t.lines());
    let keys = if public_keys.is_empty() {
        let wanted = signature_keys(lines());
        let mut fetched = BTreeMap::new();
        if !wanted.is_empty() {
            let kms = KmsClient::connect(kms_socket).await.map_err(|e| {
                explained(
                    e,
                    "the trail is signed and its public keys are read from lockbox-kms (or \
                     give them with --public-key)",
                )
            })?;
            for key_id in wanted {
                let pem = kms.get_public_key(key_id).await.map_err(|e| {
                    explained(
                        e,
                        &format!(
                            "reading the public key of {key_id} from lockbox-kms (or give it \
                             with --public-key)"
                        ),
                    )
                })?;
                fetched.insert(key_id.to_owned(), parse_public_key(&pem, key_id)?);
            }
        }
        Keys::Fetched(fetched)
    } else {
        let mut given = Vec::new();
        for path in public_keys {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            given.push(parse_public_key(&pem, &path.display().to_string())?);
        }
        Keys::Given(given)
    };
    let at = |line: u64| file_line(files, &texts, line);
    match verify(lines(), |signed| keys.check(signed)) {
        Ok(v) => {
            print(format, &report(files.len(), &v, at));
            Ok(())
        }
        Err(broken) => {
            let (file, line) = at(broken.line);
            bail!(
                "the audit trail is broken at {} line {line}: {}",
                file.display(),
                broken.reason
            )
        }
    }
}

fn report(files: usize, v: &Verified, at: impl Fn(u64) -> (PathBuf, u64)) -> serde_json::Value {
    let signed_through = v.signed_through.map(|line| {
        let (file, line) = at(line);
        json!({"file": file.display().to_string(), "line": line})
    });
    json!({
        "files": files,
        "lines": v.lines,
        "chain_lines": v.chain_lines,
        "unchained_tail": v.unchained_tail,
        "signatures": v.signatures,
        "signatures_elsewhere": v.signatures_elsewhere,
        "signed_through": signed_through,
        "unsigned_lines": v.unsigned_lines,
    })
}

/// The file, and the line in it, of line `line` counted over all the files.
fn file_line(files: &[PathBuf], texts: &[String], mut line: u64) -> (PathBuf, u64) {
    for (f, t) in files.iter().zip(texts) {
        let n = t.lines().count() as u64;
        if line <= n {
            return (f.clone(), line);
        }
        line -= n;
    }
    (files.last().cloned().unwrap_or_default(), line)
}
