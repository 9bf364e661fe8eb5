//! Support for the end-to-end tests: start the real binaries in a temp dir, wait for them to
//! report readiness, talk to them through the client library and the CLI, and stop them.
//!
//! The binaries must be built first (`cargo build --workspace --bins`; `scripts/test` does).
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a failure should abort the test

use lockbox_client::KmsClient;

pub mod gate;
pub mod scrape;
pub mod wire;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long a server may take to report readiness before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of a workspace binary next to the test executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` \
         (scripts/test does this)",
        path.display()
    );
    path
}

/// Whether the tests run as root (needed to run clients as other users).
pub fn is_root() -> bool {
    rustix_uid() == 0
}

fn rustix_uid() -> u32 {
    // /proc/self/status avoids a libc dependency just for getuid.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Options for a KMS under test.
#[derive(Debug, Clone, Default)]
pub struct KmsOptions {
    /// `--relay` subjects given to `init`.
    pub relays: Vec<String>,
    /// `--admin` subjects given to `init` (default: the test's user).
    pub admins: Vec<String>,
    /// Extra TOML for the configuration file (e.g. quotas).
    pub config: String,
    /// Extra environment for `serve`.
    pub env: Vec<(String, String)>,
    /// Run on the real clock, without the test clock's danger request.
    pub system_clock: bool,
    /// Enrol the test's own user as the secrets daemon (`init --daemon`).
    pub enrol_daemon: bool,
}

/// The `user:<name>` subject the tests run as.
pub fn my_subject() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    format!("user:{}", String::from_utf8_lossy(&out.stdout).trim())
}

/// Spawns `cmd` with `NOTIFY_SOCKET` in `dir` and its stderr in `log`, and waits for
/// `READY=1`.
fn spawn_ready(mut cmd: Command, dir: &Path, log: &Path, name: &str) -> Child {
    let notify = dir.join(format!("{name}.notify"));
    let _ = std::fs::remove_file(&notify);
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(READY_TIMEOUT)).unwrap();
    cmd.env("NOTIFY_SOCKET", &notify)
        .stderr(std::fs::File::create(log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let mut buf = [0u8; 64];
    let received = loop {
        // A signal arriving in the test process interrupts the wait; that is not a failure.
        match listener.recv(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    match received {
        Ok(n) => assert_eq!(&buf[..n], b"READY=1"),
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().ok();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{name} did not become ready ({e}; exit {status:?}): {log}");
        }
    }
    child
}

/// A server process a test started, `lockbox-kms` or `lockboxd`: its log, and the child while
/// it runs. Killed when dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
struct Server {
    /// The binary's name, for the notify socket and messages.
    name: &'static str,
    /// The temp dir holding its notify socket.
    dir: PathBuf,
    /// Its stderr.
    log: PathBuf,
    /// The running process, if started.
    child: Option<Child>,
}

impl Server {
    fn new(name: &'static str, dir: &Path, log: &str) -> Self {
        Self {
            name,
            dir: dir.to_owned(),
            log: dir.join(log),
            child: None,
        }
    }

    /// Spawns `cmd` and waits for it to notify readiness.
    fn start(&mut self, cmd: Command) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.child = Some(spawn_ready(cmd, &self.dir, &self.log, self.name));
    }

    /// Runs `cmd` expecting it to fail at start-up; returns its stderr.
    fn start_expecting_failure(&self, mut cmd: Command) -> String {
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{} unexpectedly started", self.name);
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Sends SIGTERM and waits; panics if the process failed.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "{} exited with {status}: {}",
                self.name,
                self.log()
            );
        }
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would, and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("not running").wait().unwrap()
    }

    /// What the process logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies the directory tree at `from` to `to` (created).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    // The servers refuse state directories other users may enter.
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A directory of test data kept in the repository (`tests/testdata/<name>`).
pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// A `lockbox-kms` in a temp dir: initialised on creation, started with [`Kms::start`].
#[derive(Debug)]
pub struct Kms {
    /// The server; declared first so it stops before its directory goes.
    server: Server,
    /// Holds every file of this instance; removed on drop.
    dir: tempfile::TempDir,
    /// Options it was created with.
    options: KmsOptions,
}

impl Kms {
    /// A fresh temp dir for a KMS with `options`, reachable by other local users (the tests'
    /// second identity must reach the socket inside), with its configuration file.
    fn in_temp_dir(options: KmsOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::write(dir.path().join("kms.toml"), &options.config).unwrap();
        Self {
            server: Server::new("lockbox-kms", dir.path(), "kms.log"),
            dir,
            options,
        }
    }

    /// A KMS on a copy of the state directory `state` (a keystore and its unseal material,
    /// e.g. from [`testdata`]), not started.
    pub fn from_state(state: &Path, options: KmsOptions) -> Self {
        let kms = Self::in_temp_dir(options);
        copy_dir(state, &kms.state_dir());
        std::fs::set_permissions(kms.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let unseal = kms.state_dir().join("unseal.key");
        std::fs::set_permissions(unseal, std::fs::Permissions::from_mode(0o600)).unwrap();
        kms
    }

    /// Runs `lockbox-kms init` in a fresh temp dir.
    pub fn init(options: KmsOptions) -> Self {
        let kms = Self::in_temp_dir(options);
        let (dir, options) = (&kms.dir, &kms.options);
        let mut cmd = Command::new(binary("lockbox-kms"));
        cmd.arg("init")
            .arg("--state-dir")
            .arg(dir.path().join("state"));
        for r in &options.relays {
            cmd.arg("--relay").arg(r);
        }
        for a in &options.admins {
            cmd.arg("--admin").arg(a);
        }
        if options.enrol_daemon {
            cmd.arg("--daemon").arg(my_subject());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        kms
    }

    /// The temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The state directory (keystore and unseal material).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("kms.sock")
    }

    fn serve_command(&self) -> Command {
        let mut cmd = Command::new(binary("lockbox-kms"));
        cmd.arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("kms.toml"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .env("LOCKBOX_LOG", "info");
        if !self.options.system_clock {
            cmd.arg("--danger-test-clock");
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `serve` and waits for it to notify readiness.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// Starts `serve` with extra environment and waits for readiness.
    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        let mut cmd = self.serve_command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.server.start(cmd);
    }

    /// Runs `serve` expecting it to fail at start-up; returns its stderr.
    pub fn start_expecting_failure(&self) -> String {
        self.server.start_expecting_failure(self.serve_command())
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Waits for the server to exit on its own (e.g. after an injected crash).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.server.wait_exit()
    }

    /// A client connected as the test's own user.
    pub async fn client(&self) -> KmsClient {
        KmsClient::connect(&self.socket()).await.unwrap()
    }

    /// The `lockbox` CLI pointed at this KMS.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(binary("lockbox"));
        cmd.env("LOCKBOX_KMS_SOCKET", self.socket())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI with `args`.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cli().args(args).output().unwrap()
    }

    /// Lets the unprivileged `nobody` user connect: socket group `nogroup`.
    pub fn open_socket_to_nobody(&self) {
        open_to_nobody(&self.socket());
    }

    /// Runs the CLI with `args` as `nobody` (the socket must let it in:
    /// [`open_socket_to_nobody`](Self::open_socket_to_nobody)).
    pub fn run_as_nobody(&self, args: &[&str]) -> Output {
        run_as_nobody(self.cli(), args)
    }
}

/// Adds (`add`) or removes the binding of `role` to `subject` on `resource` in lockboxd.
pub async fn change_binding(
    c: &lockbox_client::LockboxClient,
    resource: &lockbox_client::proto::lockbox::LockboxResource,
    add: bool,
    role: &str,
    subject: &str,
) {
    c.update_access_bindings(resource.clone(), vec![binding_delta(add, role, subject)])
        .await
        .unwrap();
}

/// The change adding (`add`) or removing the binding of `role` to `subject`.
fn binding_delta(
    add: bool,
    role: &str,
    subject: &str,
) -> lockbox_client::proto::common::AccessBindingDelta {
    use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
    AccessBindingDelta {
        action: if add {
            AccessBindingAction::Add
        } else {
            AccessBindingAction::Remove
        },
        binding: AccessBinding {
            role_id: role.into(),
            subject: subject.into(),
        },
    }
}

/// Adds (`add`) or removes the binding of `role` to `subject` on KMS key `key_id`.
pub async fn change_kms_binding(
    kms: &KmsClient,
    key_id: &str,
    add: bool,
    role: &str,
    subject: &str,
) {
    use lockbox_client::proto::kms::ResourceRef;
    kms.update_access_bindings(
        ResourceRef::Key(key_id.into()),
        vec![binding_delta(add, role, subject)],
    )
    .await
    .unwrap();
}

/// A new AES-256 key in KMS folder `f`, with each `(role, subject)` of `grants` bound on it.
pub async fn kms_key_with(kms: &KmsClient, grants: &[(&str, &str)]) -> String {
    use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta};
    use lockbox_client::proto::kms::{CreateSymmetricKey, ResourceRef, SymmetricAlgorithm};
    let key = kms
        .create_symmetric_key(CreateSymmetricKey {
            folder_id: "f".into(),
            name: String::new(),
            description: String::new(),
            labels: Default::default(),
            default_algorithm: SymmetricAlgorithm::Aes256,
            rotation_period: None,
            deletion_protection: false,
        })
        .await
        .unwrap()
        .id;
    let deltas = grants
        .iter()
        .map(|(role, subject)| AccessBindingDelta {
            action: AccessBindingAction::Add,
            binding: AccessBinding {
                role_id: (*role).into(),
                subject: (*subject).into(),
            },
        })
        .collect();
    kms.update_access_bindings(ResourceRef::Key(key.clone()), deltas)
        .await
        .unwrap();
    key
}

/// Lets `nobody` connect to `socket` (mode 0660) by giving it nobody's group.
fn open_to_nobody(socket: &Path) {
    let status = Command::new("chgrp")
        .arg(NOBODY.to_string())
        .arg(socket)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Uid and gid of `nobody` on Debian.
pub const NOBODY: u32 = 65534;

/// Stdout of a successful command, or a panic showing its stderr.
pub fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Stderr of a failed command, asserting it printed `lockbox: <code>: …`.
pub fn failure(out: &Output, code: &str) -> String {
    assert!(!out.status.success(), "command unexpectedly succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.starts_with(&format!("lockbox: {code}: ")),
        "expected a {code} error, got: {stderr}"
    );
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "errors print one line: {stderr}"
    );
    stderr
}

/// The id of the version an `AddVersion` operation made.
pub fn new_version_id(op: &lockbox_client::proto::lockbox::Operation) -> String {
    use lockbox_client::proto::lockbox::OperationResult;
    match &op.result {
        Some(Ok(OperationResult::Version(v))) => v.id.clone(),
        other => panic!("not a version result: {other:?}"),
    }
}

/// Parses CLI JSON output.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&success(out)).unwrap()
}

/// A `lockboxd` beside a [`Kms`], with its data directory in the KMS's temp dir.
#[derive(Debug)]
pub struct Daemon {
    /// The temp dir (the KMS's).
    dir: PathBuf,
    /// The KMS socket it uses.
    kms_socket: PathBuf,
    /// The server.
    server: Server,
}

impl Daemon {
    /// A daemon for `kms` (which must have been initialised with `enrol_daemon`), with
    /// `config` as its TOML configuration. Not started.
    pub fn new(kms: &Kms, config: &str) -> Self {
        std::fs::write(kms.dir().join("lockboxd.toml"), config).unwrap();
        Self {
            dir: kms.dir().to_owned(),
            kms_socket: kms.socket(),
            server: Server::new("lockboxd", kms.dir(), "lockboxd.log"),
        }
    }

    /// A daemon for `kms` on a copy of the data directory `data` (e.g. from [`testdata`]),
    /// not started.
    pub fn from_data(kms: &Kms, config: &str, data: &Path) -> Self {
        let daemon = Self::new(kms, config);
        copy_dir(data, &daemon.data_dir());
        daemon
    }

    /// The daemon, talking to the KMS through `socket` (a [`gate::KmsGate`]) instead.
    pub fn with_kms_socket(mut self, socket: &Path) -> Self {
        self.kms_socket = socket.to_owned();
        self
    }

    /// Starts a KMS enrolled for the daemon and a daemon with `config`, both ready.
    pub fn with_kms(config: &str) -> (Kms, Daemon) {
        let mut kms = Kms::init(KmsOptions {
            enrol_daemon: true,
            ..KmsOptions::default()
        });
        kms.start();
        let mut daemon = Daemon::new(&kms, config);
        daemon.start();
        (kms, daemon)
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("lockbox.sock")
    }

    /// The RocksDB data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        self.server.log()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(binary("lockboxd"));
        cmd.arg("--config")
            .arg(self.dir.join("lockboxd.toml"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--kms-socket")
            .arg(&self.kms_socket)
            .arg("--danger-test-clock")
            .env("LOCKBOX_LOG", "info");
        cmd
    }

    /// Starts the daemon and waits for readiness.
    pub fn start(&mut self) {
        self.server.start(self.command());
    }

    /// Runs the daemon expecting it to fail at start-up; returns its stderr.
    pub fn start_expecting_failure(&self) -> String {
        self.server.start_expecting_failure(self.command())
    }

    /// Stops the daemon with SIGTERM.
    pub fn stop(&mut self) {
        self.server.stop();
    }

    /// Starts the daemon with extra environment and waits for readiness.
    pub fn start_with(&mut self, env: &[(&str, &str)]) {
        let mut cmd = self.command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.server.start(cmd);
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.server.wait_exit()
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }

    /// Kills the daemon with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Threads of the running daemon that are tokio runtime workers (named `tokio-rt-worker`).
    /// A current-thread runtime has none; lockboxd starts no blocking-pool threads, which
    /// would share the name.
    pub fn runtime_workers(&self) -> usize {
        let pid = self.server.pid();
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter(|task| {
                let comm = task.as_ref().unwrap().path().join("comm");
                std::fs::read_to_string(comm).is_ok_and(|name| name.trim() == "tokio-rt-worker")
            })
            .count()
    }

    /// Lets the Unix user `nobody` connect to the daemon's socket.
    pub fn open_socket_to_nobody(&self) {
        open_to_nobody(&self.socket());
    }

    /// A client of the daemon.
    pub async fn client(&self) -> lockbox_client::LockboxClient {
        lockbox_client::LockboxClient::connect(&self.socket())
            .await
            .unwrap()
    }

    /// The `lockbox` CLI pointed at this daemon and its KMS.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(binary("lockbox"));
        cmd.env("LOCKBOX_SOCKET", self.socket())
            .env("LOCKBOX_KMS_SOCKET", &self.kms_socket)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the CLI with `args`.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cli().args(args).output().unwrap()
    }

    /// Runs the CLI with `args` as `nobody` (the daemon's socket must let it in:
    /// [`open_socket_to_nobody`](Self::open_socket_to_nobody)).
    pub fn run_as_nobody(&self, args: &[&str]) -> Output {
        run_as_nobody(self.cli(), args)
    }
}

/// Runs `cli` with `args` as the unprivileged `nobody` user.
fn run_as_nobody(mut cli: Command, args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    assert!(
        is_root(),
        "this test runs a client as another Unix user and must run as root (CI does)"
    );
    cli.uid(NOBODY).gid(NOBODY).args(args).output().unwrap()
}

/// Helpers for building and reading Lockbox payloads in tests.
pub mod payload {
    use lockbox_client::lockbox::Payload;
    use lockbox_client::proto::SecretBytes;
    use lockbox_client::proto::lockbox::{
        AddVersion, CreateSecret, PayloadEntryChange, PayloadValue,
    };
    use lockbox_client::proto::payload::PayloadValueRef;
    use std::collections::BTreeMap;

    /// Sets `key` to a text value.
    pub fn set(key: &str, value: &str) -> PayloadEntryChange {
        PayloadEntryChange {
            key: key.into(),
            value: Some(PayloadValue::Text(SecretBytes::new(
                value.as_bytes().to_vec(),
            ))),
        }
    }

    /// Sets `key` to a binary value.
    pub fn set_binary(key: &str, value: &[u8]) -> PayloadEntryChange {
        PayloadEntryChange {
            key: key.into(),
            value: Some(PayloadValue::Binary(SecretBytes::new(value.to_vec()))),
        }
    }

    /// Removes `key`.
    pub fn remove(key: &str) -> PayloadEntryChange {
        PayloadEntryChange {
            key: key.into(),
            value: None,
        }
    }

    /// A new version of `secret_id`: these changes on its current version.
    pub fn add(secret_id: &str, changes: Vec<PayloadEntryChange>) -> AddVersion {
        AddVersion {
            secret_id: secret_id.into(),
            description: String::new(),
            payload_entries: changes,
            base_version_id: None,
        }
    }

    /// A secret in the default folder with these first entries.
    pub fn secret(name: &str, entries: Vec<PayloadEntryChange>) -> CreateSecret {
        CreateSecret {
            folder_id: String::new(),
            name: name.into(),
            description: String::new(),
            labels: BTreeMap::new(),
            kms_key_id: String::new(),
            version_description: String::new(),
            version_payload_entries: entries,
            deletion_protection: false,
            password_payload_specification: None,
        }
    }

    /// A payload as key → value text (binary values shown as `bin:<hex>`).
    pub fn map(p: &Payload) -> BTreeMap<String, String> {
        p.entries()
            .map(|e| {
                let v = match e.value {
                    PayloadValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    PayloadValueRef::Binary(b) => {
                        format!(
                            "bin:{}",
                            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                        )
                    }
                    _ => String::new(),
                };
                (e.key.to_owned(), v)
            })
            .collect()
    }

    /// `key → value` pairs as a map, for comparisons.
    pub fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}
