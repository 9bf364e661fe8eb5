//! The `lockbox kms` CLI end to end: every command group, both output formats, errors as
//! one line with a non-zero exit, and signatures that standard tools verify.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_tests::{Kms, KmsOptions, failure, json, success};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use std::process::Command;

fn started() -> Kms {
    let mut kms = Kms::init(KmsOptions::default());
    kms.start();
    kms
}

fn me(kms: &Kms) -> String {
    // The default admin is the user that ran init, i.e. this test.
    let out = json(&kms.run([
        "kms",
        "access-binding",
        "list",
        "--root",
        "--format",
        "json",
    ]));
    out[0]["subject"].as_str().unwrap().to_owned()
}

#[test]
fn symmetric_key_lifecycle_through_the_cli() {
    let kms = started();
    let key = json(&kms.run([
        "kms",
        "symmetric-key",
        "create",
        "--folder-id",
        "f",
        "--name",
        "cli-key",
        "--labels",
        "team=core,env=dev",
        "--default-algorithm",
        "aes-128",
        "--rotation-period",
        "30d",
        "--format",
        "json",
    ]));
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["name"], "cli-key");
    assert_eq!(key["labels"]["team"], "core");
    assert_eq!(key["default_algorithm"], "AES_128");
    assert_eq!(key["rotation_period"], "2592000s");
    assert_eq!(key["status"], "ACTIVE");
    let v1 = key["primary_version"]["id"].as_str().unwrap().to_owned();

    let text = success(&kms.run(["kms", "symmetric-key", "get", &id]));
    assert!(text.contains(&format!("id: {id}")), "{text}");
    assert!(text.contains("name: cli-key"), "{text}");

    let listed = json(&kms.run([
        "kms",
        "symmetric-key",
        "list",
        "--folder-id",
        "f",
        "--format",
        "json",
    ]));
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let updated = json(&kms.run([
        "kms",
        "symmetric-key",
        "update",
        &id,
        "--description",
        "now described",
        "--no-rotation",
        "--deletion-protection",
        "true",
        "--format",
        "json",
    ]));
    assert_eq!(updated["description"], "now described");
    assert!(updated.get("rotation_period").is_none());
    assert_eq!(updated["name"], "cli-key", "fields not given stay");
    let err = failure(
        &kms.run(["kms", "symmetric-key", "update", &id]),
        "INVALID_ARGUMENT",
    );
    assert!(err.contains("nothing to update"), "{err}");

    let rotated = json(&kms.run(["kms", "symmetric-key", "rotate", &id, "--format", "json"]));
    let v2 = rotated["primary_version"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(v1, v2);
    let versions = json(&kms.run([
        "kms",
        "symmetric-key",
        "list-versions",
        &id,
        "--format",
        "json",
    ]));
    assert_eq!(versions.as_array().unwrap().len(), 2);

    let primary = json(&kms.run([
        "kms",
        "symmetric-key",
        "set-primary-version",
        &id,
        "--version-id",
        &v1,
        "--format",
        "json",
    ]));
    assert_eq!(primary["primary_version"]["id"], v1.as_str());
    let scheduled = json(&kms.run([
        "kms",
        "symmetric-key",
        "schedule-version-destruction",
        &id,
        "--version-id",
        &v2,
        "--pending-period",
        "2d",
        "--format",
        "json",
    ]));
    assert_eq!(scheduled["status"], "SCHEDULED_FOR_DESTRUCTION");
    let cancelled = json(&kms.run([
        "kms",
        "symmetric-key",
        "cancel-version-destruction",
        &id,
        "--version-id",
        &v2,
        "--format",
        "json",
    ]));
    assert_eq!(cancelled["status"], "ACTIVE");

    let err = failure(
        &kms.run(["kms", "symmetric-key", "delete", &id]),
        "FAILED_PRECONDITION",
    );
    assert!(err.contains("deletion protection"), "{err}");
    success(&kms.run([
        "kms",
        "symmetric-key",
        "update",
        &id,
        "--deletion-protection",
        "false",
    ]));
    success(&kms.run(["kms", "symmetric-key", "delete", &id]));
    failure(&kms.run(["kms", "symmetric-key", "get", &id]), "NOT_FOUND");
}

#[test]
fn symmetric_crypto_through_files_and_stdin() {
    let kms = started();
    let me = me(&kms);
    success(&kms.run([
        "kms",
        "access-binding",
        "add",
        "--folder-id",
        "f",
        "--role",
        "kms.keys.encrypterDecrypter",
        "--subject",
        &me,
    ]));
    let create = |name: &str| {
        json(&kms.run([
            "kms",
            "symmetric-key",
            "create",
            "--folder-id",
            "f",
            "--name",
            name,
            "--format",
            "json",
        ]))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (create("a"), create("b"));
    let dir = kms.dir();
    let plain = dir.join("plain");
    let ct = dir.join("ct");
    std::fs::write(&plain, b"the quick brown fox").unwrap();
    success(&kms.run([
        "kms",
        "symmetric-crypto",
        "encrypt",
        "--id",
        &a,
        "--aad-context",
        "ctx",
        "--plaintext-file",
        plain.to_str().unwrap(),
        "--ciphertext-file",
        ct.to_str().unwrap(),
    ]));
    let out = success(&kms.run([
        "kms",
        "symmetric-crypto",
        "decrypt",
        "--id",
        &a,
        "--aad-context",
        "ctx",
        "--ciphertext-file",
        ct.to_str().unwrap(),
    ]));
    assert_eq!(out, "the quick brown fox");
    failure(
        &kms.run([
            "kms",
            "symmetric-crypto",
            "decrypt",
            "--id",
            &a,
            "--ciphertext-file",
            ct.to_str().unwrap(),
        ]),
        "INVALID_ARGUMENT",
    );

    // Plaintext from stdin, ciphertext printed in base64 and read back from that text.
    let mut child = kms
        .cli()
        .args([
            "kms",
            "symmetric-crypto",
            "encrypt",
            "--id",
            &a,
            "--plaintext-file",
            "-",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from stdin")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed: serde_json::Value = serde_json::from_str(&success(&out)).unwrap();
    let b64 = dir.join("ct.b64");
    std::fs::write(&b64, printed["ciphertext"].as_str().unwrap()).unwrap();
    let out = success(&kms.run([
        "kms",
        "symmetric-crypto",
        "decrypt",
        "--id",
        &a,
        "--ciphertext-file",
        b64.to_str().unwrap(),
    ]));
    assert_eq!(out, "from stdin");

    let moved = dir.join("moved");
    success(&kms.run([
        "kms",
        "symmetric-crypto",
        "reencrypt",
        "--id",
        &b,
        "--source-key-id",
        &a,
        "--source-aad-context",
        "ctx",
        "--ciphertext-file",
        ct.to_str().unwrap(),
        "--new-ciphertext-file",
        moved.to_str().unwrap(),
    ]));
    let out = success(&kms.run([
        "kms",
        "symmetric-crypto",
        "decrypt",
        "--id",
        &b,
        "--ciphertext-file",
        moved.to_str().unwrap(),
    ]));
    assert_eq!(out, "the quick brown fox");

    let dk = json(&kms.run([
        "kms",
        "symmetric-crypto",
        "generate-data-key",
        "--id",
        &a,
        "--data-key-spec",
        "aes-128",
        "--format",
        "json",
    ]));
    assert_eq!(
        dk["data_key_plaintext"].as_str().unwrap().len(),
        24,
        "16 bytes in base64"
    );
    let dk = json(&kms.run([
        "kms",
        "symmetric-crypto",
        "generate-data-key",
        "--id",
        &a,
        "--skip-plaintext",
        "--format",
        "json",
    ]));
    assert!(dk.get("data_key_plaintext").is_none());
}

#[test]
fn signatures_verify_with_openssl_and_p256() {
    let kms = started();
    let me = me(&kms);
    let key = json(&kms.run([
        "kms",
        "asymmetric-signature-key",
        "create",
        "--folder-id",
        "f",
        "--name",
        "signer",
        "--format",
        "json",
    ]));
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["signature_algorithm"], "ECDSA_NIST_P256_SHA_256");
    let listed = json(&kms.run([
        "kms",
        "asymmetric-signature-key",
        "list",
        "--folder-id",
        "f",
        "--format",
        "json",
    ]));
    assert_eq!(listed[0]["id"], id.as_str());
    let err = failure(
        &kms.run([
            "kms",
            "asymmetric-signature-crypto",
            "sign",
            "--id",
            &id,
            "--message-file",
            "/dev/null",
        ]),
        "PERMISSION_DENIED",
    );
    assert!(err.contains("kms.asymmetricSignatureKeys.sign"), "{err}");
    success(&kms.run([
        "kms",
        "access-binding",
        "add",
        "--key-id",
        &id,
        "--role",
        "kms.asymmetricSignatureKeys.signer",
        "--subject",
        &me,
    ]));

    let dir = kms.dir();
    let (pem, msg, sig, sig2) = (
        dir.join("pub.pem"),
        dir.join("msg"),
        dir.join("sig"),
        dir.join("sig2"),
    );
    std::fs::write(&msg, b"sign me").unwrap();
    success(&kms.run([
        "kms",
        "asymmetric-signature-key",
        "get-public-key",
        &id,
        "--output",
        pem.to_str().unwrap(),
    ]));
    success(&kms.run([
        "kms",
        "asymmetric-signature-crypto",
        "sign",
        "--id",
        &id,
        "--message-file",
        msg.to_str().unwrap(),
        "--signature-file",
        sig.to_str().unwrap(),
    ]));
    use sha2_digest::digest;
    let hash = digest(b"sign me");
    success(&kms.run([
        "kms",
        "asymmetric-signature-crypto",
        "sign-hash",
        "--id",
        &id,
        "--hash",
        &hash,
        "--signature-file",
        sig2.to_str().unwrap(),
    ]));
    failure(
        &kms.run([
            "kms",
            "asymmetric-signature-crypto",
            "sign-hash",
            "--id",
            &id,
            "--hash",
            "abcd",
        ]),
        "INVALID_ARGUMENT",
    );

    let key =
        p256::ecdsa::VerifyingKey::from_public_key_pem(&std::fs::read_to_string(&pem).unwrap())
            .unwrap();
    for s in [&sig, &sig2] {
        let der = p256::ecdsa::Signature::from_der(&std::fs::read(s).unwrap()).unwrap();
        key.verify(b"sign me", &der).unwrap();
        let out = Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(&pem)
            .arg("-signature")
            .arg(s)
            .arg(&msg)
            .output()
            .expect("openssl is needed for this test (scripts/test installs it)");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");
    }
}

/// SHA-256 in hex.
mod sha2_digest {
    pub(super) fn digest(data: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[test]
fn access_bindings_add_list_remove() {
    let kms = started();
    success(&kms.run([
        "kms",
        "access-binding",
        "add",
        "--folder-id",
        "f",
        "--role",
        "kms.viewer",
        "--subject",
        "group:ops",
    ]));
    let listed = json(&kms.run([
        "kms",
        "access-binding",
        "list",
        "--folder-id",
        "f",
        "--format",
        "json",
    ]));
    assert_eq!(
        listed,
        serde_json::json!([{ "role_id": "kms.viewer", "subject": "group:ops" }])
    );
    success(&kms.run([
        "kms",
        "access-binding",
        "remove",
        "--folder-id",
        "f",
        "--role",
        "kms.viewer",
        "--subject",
        "group:ops",
    ]));
    let listed = json(&kms.run([
        "kms",
        "access-binding",
        "list",
        "--folder-id",
        "f",
        "--format",
        "json",
    ]));
    assert_eq!(listed, serde_json::json!([]));
    let err = failure(
        &kms.run([
            "kms",
            "access-binding",
            "add",
            "--root",
            "--role",
            "kms.god",
            "--subject",
            "user:x",
        ]),
        "INVALID_ARGUMENT",
    );
    assert!(err.contains("unknown role"), "{err}");
}

#[test]
fn errors_are_one_line_and_help_explains() {
    let kms = Kms::init(KmsOptions::default());
    // Not started: the socket is missing.
    let err = failure(
        &kms.run(["kms", "symmetric-key", "list", "--folder-id", "f"]),
        "UNAVAILABLE",
    );
    assert!(err.contains("cannot connect to lockbox-kms"), "{err}");

    let help = success(&kms.run(["kms", "symmetric-crypto", "encrypt", "--help"]));
    assert!(help.contains("--aad-context"), "{help}");
    assert!(help.contains("--plaintext-file"), "{help}");
    let out = kms.run(["kms", "symmetric-key", "create"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--folder-id"));
}
