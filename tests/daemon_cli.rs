//! The `lockbox secret`, `payload` and `resource-manager` commands end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_tests::{Daemon, failure, json, success};
use std::io::Write;
use std::process::Stdio;

#[test]
fn secrets_and_payloads_through_the_cli() {
    let (_kms, daemon) = Daemon::with_kms("");
    let created = json(&daemon.run([
        "secret",
        "create",
        "--name",
        "app",
        "--description",
        "app credentials",
        "--labels",
        "team=core",
        "--payload",
        r#"[{"key":"user","text_value":"alice"},{"key":"blob","binary_value":"AAEC/w=="}]"#,
        "--format",
        "json",
    ]));
    assert_eq!(created["description"], "Create secret");
    assert_eq!(created["done"], true);
    let id = created["response"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["response"]["current_version"]["payload_entry_keys"],
        serde_json::json!(["user", "blob"])
    );

    let text = success(&daemon.run(["payload", "get", "--name", "app"]));
    assert!(text.contains("text_value: alice"), "{text}");
    assert!(text.contains("binary_value: AAEC/w=="), "{text}");
    assert_eq!(
        success(&daemon.run(["payload", "get", "--id", &id, "--key", "user"])),
        "alice"
    );
    let raw = daemon.run(["payload", "get", "--id", &id, "--key", "blob"]);
    assert_eq!(raw.stdout, vec![0, 1, 2, 255]);
    let missing = failure(
        &daemon.run(["payload", "get", "--id", &id, "--key", "password"]),
        "NOT_FOUND",
    );
    assert!(missing.contains(r#"no entry "password""#), "{missing}");

    // A payload from stdin, and removing a key.
    let mut child = daemon
        .cli()
        .args([
            "secret",
            "add-version",
            "--name",
            "app",
            "--payload-file",
            "-",
            "--remove-keys",
            "blob",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"[{"key":"password","text_value":"from-stdin"}]"#)
        .unwrap();
    success(&child.wait_with_output().unwrap());
    let payload = json(&daemon.run(["payload", "get", "--name", "app", "--format", "json"]));
    assert_eq!(
        payload["entries"],
        serde_json::json!([{"key":"user","text_value":"alice"},{"key":"password","text_value":"from-stdin"}])
    );

    let versions = json(&daemon.run(["secret", "list-versions", "--id", &id, "--format", "json"]));
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    let old = versions[1]["id"].as_str().unwrap().to_owned();
    let scheduled = json(&daemon.run([
        "secret",
        "schedule-version-destruction",
        "--id",
        &id,
        "--version-id",
        &old,
        "--pending-period",
        "1d",
        "--format",
        "json",
    ]));
    assert_eq!(scheduled["response"]["status"], "SCHEDULED_FOR_DESTRUCTION");
    success(&daemon.run([
        "secret",
        "cancel-version-destruction",
        "--id",
        &id,
        "--version-id",
        &old,
    ]));
    success(&daemon.run([
        "secret",
        "set-current-version",
        "--id",
        &id,
        "--version-id",
        &old,
    ]));
    assert_eq!(
        success(&daemon.run(["payload", "get", "--id", &id, "--key", "user"])),
        "alice"
    );

    success(&daemon.run([
        "secret",
        "update",
        "--name",
        "app",
        "--new-name",
        "app2",
        "--deletion-protection",
        "true",
    ]));
    let got = json(&daemon.run(["secret", "get", "--id", &id, "--format", "json"]));
    assert_eq!(
        (got["name"].as_str(), got["deletion_protection"].as_bool()),
        (Some("app2"), Some(true))
    );
    success(&daemon.run(["secret", "deactivate", "--id", &id]));
    let err = failure(
        &daemon.run(["payload", "get", "--id", &id]),
        "FAILED_PRECONDITION",
    );
    assert!(err.contains("deactivated"), "{err}");
    success(&daemon.run(["secret", "activate", "--id", &id]));
    let ops = json(&daemon.run(["secret", "list-operations", "--id", &id, "--format", "json"]));
    assert_eq!(ops[0]["description"], "Activate secret");
    assert_eq!(
        ops.as_array().unwrap().last().unwrap()["description"],
        "Create secret"
    );

    failure(
        &daemon.run(["secret", "delete", "--id", &id]),
        "FAILED_PRECONDITION",
    );
    success(&daemon.run([
        "secret",
        "update",
        "--id",
        &id,
        "--deletion-protection",
        "false",
    ]));
    success(&daemon.run(["secret", "delete", "--id", &id]));
    let listed = json(&daemon.run(["secret", "list", "--format", "json"]));
    assert_eq!(listed, serde_json::json!([]));
}

#[test]
fn generated_passwords_and_bad_input_through_the_cli() {
    let (_kms, daemon) = Daemon::with_kms("");
    success(&daemon.run([
        "secret",
        "create",
        "--name",
        "db",
        "--password-key",
        "password",
        "--password-length",
        "24",
        "--no-punctuation",
    ]));
    let pw = success(&daemon.run(["payload", "get", "--name", "db", "--key", "password"]));
    assert_eq!(pw.len(), 24);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw}");

    let err = failure(
        &daemon.run(["secret", "create", "--name", "x", "--payload", "not json"]),
        "INVALID_ARGUMENT",
    );
    assert!(err.contains("--payload"), "{err}");
    let err = failure(
        &daemon.run([
            "secret",
            "create",
            "--name",
            "x",
            "--payload",
            r#"[{"key":"k"}]"#,
        ]),
        "INVALID_ARGUMENT",
    );
    assert!(err.contains("text_value or binary_value"), "{err}");
    failure(
        &daemon.run(["secret", "get", "--name", "nope"]),
        "NOT_FOUND",
    );
    failure(
        &daemon.run(["payload", "get", "--name", "db", "--key", "missing"]),
        "NOT_FOUND",
    );
    let out = daemon.run(["secret", "get"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "usage error: --id or --name is required"
    );
}

#[test]
fn clouds_and_folders_through_the_cli() {
    let (_kms, daemon) = Daemon::with_kms("");
    let folders = json(&daemon.run(["resource-manager", "folder", "list", "--format", "json"]));
    assert_eq!(folders[0]["name"], "default");
    let cloud = json(&daemon.run([
        "resource-manager",
        "cloud",
        "create",
        "--name",
        "prod",
        "--format",
        "json",
    ]));
    let cloud_id = cloud["response"]["id"].as_str().unwrap().to_owned();
    let folder = json(&daemon.run([
        "resource-manager",
        "folder",
        "create",
        "--name",
        "web",
        "--cloud-id",
        &cloud_id,
        "--format",
        "json",
    ]));
    let folder_id = folder["response"]["id"].as_str().unwrap().to_owned();
    success(&daemon.run([
        "secret",
        "create",
        "--name",
        "tls",
        "--folder-id",
        &folder_id,
        "--payload",
        r#"[{"key":"k","text_value":"v"}]"#,
    ]));
    assert_eq!(
        success(&daemon.run([
            "payload",
            "get",
            "--name",
            "tls",
            "--folder-id",
            &folder_id,
            "--key",
            "k"
        ])),
        "v"
    );
    failure(
        &daemon.run(["payload", "get", "--name", "tls"]),
        "NOT_FOUND",
    );
    let got = json(&daemon.run([
        "resource-manager",
        "folder",
        "get",
        &folder_id,
        "--format",
        "json",
    ]));
    assert_eq!(got["cloud_id"], cloud_id.as_str());
    failure(
        &daemon.run(["resource-manager", "folder", "delete", &folder_id]),
        "FAILED_PRECONDITION",
    );
    success(&daemon.run([
        "secret",
        "delete",
        "--name",
        "tls",
        "--folder-id",
        &folder_id,
    ]));
    success(&daemon.run(["resource-manager", "folder", "delete", &folder_id]));
    success(&daemon.run(["resource-manager", "cloud", "delete", &cloud_id]));
    failure(
        &daemon.run(["resource-manager", "cloud", "get", &cloud_id]),
        "NOT_FOUND",
    );
}

#[test]
fn an_endless_payload_file_is_refused_not_read_into_memory() {
    let (_kms, daemon) = Daemon::with_kms("");
    let err = failure(
        &daemon.run([
            "secret",
            "create",
            "--name",
            "endless",
            "--payload-file",
            "/dev/zero",
        ]),
        "RESOURCE_EXHAUSTED",
    );
    assert!(err.contains("/dev/zero: more than"), "{err}");
    // Same for stdin that never ends.
    let out = daemon
        .cli()
        .args([
            "secret",
            "create",
            "--name",
            "endless",
            "--payload-file",
            "-",
        ])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    let err = failure(&out, "RESOURCE_EXHAUSTED");
    assert!(err.contains("stdin: more than"), "{err}");
}

/// The operations recorded on a folder, a cloud and the organization can be listed by
/// whoever may read there, and by no one else.
#[tokio::test]
async fn operations_on_folders_clouds_and_the_organization_are_listed() {
    use lockbox_client::proto::common::Page;
    use lockbox_client::proto::lockbox::LockboxResource;
    let (_kms, daemon) = Daemon::with_kms("");
    let folder = json(&daemon.run([
        "--format",
        "json",
        "resource-manager",
        "folder",
        "create",
        "--name",
        "apps",
    ]));
    let folder_id = folder["response"]["id"].as_str().unwrap().to_owned();
    let cloud_id = folder["response"]["cloud_id"].as_str().unwrap().to_owned();
    success(&daemon.run([
        "resource-manager",
        "folder",
        "add-access-binding",
        &folder_id,
        "--role",
        "lockbox.viewer",
        "--subject",
        "user:nobody",
    ]));
    let listed = json(&daemon.run([
        "--format",
        "json",
        "resource-manager",
        "folder",
        "list-operations",
        &folder_id,
    ]));
    let descriptions: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["description"].as_str().unwrap())
        .collect();
    assert_eq!(descriptions, ["Update access bindings", "Create folder"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["resource_id"] == folder_id.as_str())
    );

    // The cloud's own list holds what was done to the cloud, not to its folders.
    let cloud_ops = json(&daemon.run([
        "--format",
        "json",
        "resource-manager",
        "cloud",
        "list-operations",
        &cloud_id,
    ]));
    assert!(
        cloud_ops
            .as_array()
            .unwrap()
            .iter()
            .all(|op| op["resource_id"] == cloud_id.as_str()),
        "{cloud_ops}"
    );

    // The organization's, through the client.
    let client = daemon.client().await;
    let (clouds, _) = client.list_clouds(Page::default()).await.unwrap();
    let organization = LockboxResource::Organization(clouds[0].organization_id.clone());
    lockbox_tests::change_binding(&client, &organization, true, "auditor", "user:nobody").await;
    let (ops, _) = client
        .list_resource_operations(organization, Page::default())
        .await
        .unwrap();
    assert_eq!(ops[0].description, "Update access bindings");

    // nobody, a viewer of the folder, reads its list; once its auditor role on the
    // organization is gone, a folder it has no role on is refused.
    daemon.open_socket_to_nobody();
    success(&daemon.run_as_nobody(&["resource-manager", "folder", "list-operations", &folder_id]));
    let other = json(&daemon.run([
        "--format",
        "json",
        "resource-manager",
        "folder",
        "create",
        "--name",
        "private",
    ]))["response"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    lockbox_tests::change_binding(
        &client,
        &LockboxResource::Organization(clouds[0].organization_id.clone()),
        false,
        "auditor",
        "user:nobody",
    )
    .await;
    let denied = failure(
        &daemon.run_as_nobody(&["resource-manager", "folder", "list-operations", &other]),
        "PERMISSION_DENIED",
    );
    assert!(denied.contains("lockbox.secrets.get"), "{denied}");
    failure(
        &daemon.run([
            "resource-manager",
            "folder",
            "list-operations",
            "no such id",
        ]),
        "INVALID_ARGUMENT",
    );
}
