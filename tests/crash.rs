//! Crash cycles: while a client creates and deletes secrets, adds versions, changes bindings
//! and rotates KMS keys, lockboxd, lockbox-kms or both are killed with SIGKILL at a random
//! moment and restarted. After every restart each acknowledged change is there, the one
//! change in flight is either wholly there or wholly absent, names resolve to their secrets,
//! and every payload decrypts.
//!
//! 50 cycles run in the test suite; `LOCKBOX_CRASH_CYCLES=1000 cargo test --test crash` runs
//! the long form (README, "Tests").
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers abort the test on failure

use lockbox_client::proto::common::{AccessBinding, AccessBindingAction, AccessBindingDelta, Page};
use lockbox_client::proto::lockbox::{AddVersion, LockboxResource};
use lockbox_client::{KmsClient, LockboxClient};
use lockbox_tests::payload::{map, secret, set};
use lockbox_tests::{Daemon, Kms, KmsOptions, my_subject};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A deterministic xorshift, so a failing cycle can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the client was told: live secrets by id (name, current value), and which of them
/// carry a viewer binding for `user:nobody`.
#[derive(Debug, Default, Clone)]
struct Model {
    secrets: BTreeMap<String, (String, String)>,
    bound: BTreeSet<String>,
}

/// One change.
#[derive(Debug, Clone)]
enum Op {
    Create {
        name: String,
        value: String,
        keyed: bool,
    },
    AddVersion {
        id: String,
        value: String,
    },
    Delete {
        id: String,
    },
    Bind {
        id: String,
        add: bool,
    },
    Rotate,
}

struct World {
    kms: Kms,
    daemon: Daemon,
    key: String,
}

impl World {
    async fn clients(&self) -> (LockboxClient, KmsClient) {
        (self.daemon.client().await, self.kms.client().await)
    }
}

fn pick(rng: &mut Rng, model: &Model, n: u64, key_count: usize) -> Op {
    let ids: Vec<&String> = model.secrets.keys().collect();
    let choice = if ids.is_empty() { 0 } else { rng.below(10) };
    let some_id = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize].clone();
    match choice {
        0..=2 => Op::Create {
            name: format!("s{n}"),
            value: format!("v{n}"),
            keyed: rng.below(2) == 0 && key_count > 0,
        },
        3..=5 => Op::AddVersion {
            id: some_id(rng),
            value: format!("v{n}"),
        },
        6 => Op::Delete { id: some_id(rng) },
        7 | 8 => {
            let id = some_id(rng);
            let add = !model.bound.contains(&id);
            Op::Bind { id, add }
        }
        _ => Op::Rotate,
    }
}

/// Runs `op`; `Ok` when it was acknowledged.
async fn run(op: &Op, c: &LockboxClient, kms: &KmsClient, key: &str) -> Result<(), String> {
    let done = match op {
        Op::Create { name, value, keyed } => {
            let mut spec = secret(name, vec![set("k", value)]);
            if *keyed {
                spec.kms_key_id = key.to_owned();
            }
            c.create_secret(spec).await.map(drop)
        }
        Op::AddVersion { id, value } => c
            .add_version(AddVersion {
                secret_id: id.clone(),
                description: String::new(),
                payload_entries: vec![set("k", value)],
                base_version_id: None,
            })
            .await
            .map(drop),
        Op::Delete { id } => c.delete_secret(id).await.map(drop),
        Op::Bind { id, add } => {
            let action = if *add {
                AccessBindingAction::Add
            } else {
                AccessBindingAction::Remove
            };
            let delta = AccessBindingDelta {
                action,
                binding: AccessBinding {
                    role_id: "lockbox.viewer".into(),
                    subject: "user:nobody".into(),
                },
            };
            c.update_access_bindings(LockboxResource::Secret(id.clone()), vec![delta])
                .await
                .map(drop)
        }
        Op::Rotate => kms.rotate(key).await.map(drop),
    };
    done.map_err(|e| e.to_string())
}

/// What the store holds now, read through the real daemon.
async fn observed(c: &LockboxClient) -> Model {
    let mut model = Model::default();
    let mut page = Page::default();
    loop {
        let listed = c.list_secrets("", page.clone()).await.unwrap();
        for s in listed.0 {
            let payload = c
                .get_payload(&s.id, None)
                .await
                .unwrap_or_else(|e| panic!("secret {} does not decrypt: {e}", s.id));
            let value = map(&payload).remove("k").expect("every version sets k");
            // The name index leads to the same secret and the same payload.
            let by_name = c.get_payload_by_name("", &s.name, None).await.unwrap();
            assert_eq!(
                map(&by_name).remove("k").as_ref(),
                Some(&value),
                "{}",
                s.name
            );
            let bindings = c
                .list_access_bindings(LockboxResource::Secret(s.id.clone()), Page::default())
                .await
                .unwrap();
            if bindings.0.iter().any(|b| b.subject == "user:nobody") {
                model.bound.insert(s.id.clone());
            }
            model.secrets.insert(s.id, (s.name, value));
        }
        if listed.1.is_empty() {
            return model;
        }
        page.page_token = listed.1;
    }
}

/// Applies an acknowledged `op` to the model; `created` is the id a creation got.
fn apply(model: &mut Model, op: &Op, created: Option<String>) {
    match op {
        Op::Create { name, value, .. } => {
            let id = created.expect("a created secret has an id");
            model.secrets.insert(id, (name.clone(), value.clone()));
        }
        Op::AddVersion { id, value } => {
            if let Some(entry) = model.secrets.get_mut(id) {
                entry.1 = value.clone();
            }
        }
        Op::Delete { id } => {
            model.secrets.remove(id);
            model.bound.remove(id);
        }
        Op::Bind { id, add } => {
            if *add {
                model.bound.insert(id.clone());
            } else {
                model.bound.remove(id);
            }
        }
        Op::Rotate => {}
    }
}

/// Whether `seen` is `before` with `op` either not applied or applied whole.
fn all_or_nothing(before: &Model, op: &Op, seen: &Model) -> bool {
    let same = |m: &Model| m.secrets == seen.secrets && m.bound == seen.bound;
    if same(before) {
        return true;
    }
    let mut after = before.clone();
    match op {
        Op::Create { name, value, .. } => {
            // The one new secret must be exactly the one created.
            let new: Vec<_> = seen
                .secrets
                .iter()
                .filter(|(id, _)| !before.secrets.contains_key(*id))
                .collect();
            let [(id, (n, v))] = new[..] else {
                return false;
            };
            if n != name || v != value {
                return false;
            }
            apply(&mut after, op, Some(id.clone()));
        }
        _ => apply(&mut after, op, None),
    }
    same(&after)
}

#[tokio::test]
async fn every_acknowledged_change_survives_kill_9_and_nothing_is_half_applied() {
    let cycles: u64 = std::env::var("LOCKBOX_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut kms = Kms::init(KmsOptions {
        enrol_daemon: true,
        // A rotation a few cycles: the long form makes hundreds of versions.
        config: "[quotas]\nversions_per_key = 10000\n".into(),
        ..KmsOptions::default()
    });
    kms.start();
    let me = my_subject();
    let key = lockbox_tests::kms_key_with(
        &kms.client().await,
        &[("kms.keys.encrypterDecrypter", me.as_str())],
    )
    .await;
    let mut daemon = Daemon::new(&kms, "");
    daemon.start();
    let mut world = World { kms, daemon, key };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut model = Model::default();
    let mut n = 0u64;
    // In-flight changes acknowledged before the kill, and cut off by it.
    let (mut acknowledged, mut cut) = (0u64, 0u64);
    for cycle in 0..cycles {
        let (c, k) = world.clients().await;
        // A few changes that run to completion...
        for _ in 0..rng.below(4) {
            n += 1;
            let op = pick(&mut rng, &model, n, 1);
            run(&op, &c, &k, &world.key)
                .await
                .unwrap_or_else(|e| panic!("cycle {cycle}: {op:?}: {e}"));
            let id = match &op {
                Op::Create { name, .. } => Some(find_by_name(&c, name).await),
                _ => None,
            };
            apply(&mut model, &op, id);
        }
        // ...then one in flight when a process dies.
        n += 1;
        let op = pick(&mut rng, &model, n, 1);
        let victim = rng.below(3);
        // Most changes take a millisecond or two here: kill within that.
        let delay = Duration::from_micros(rng.below(1500));
        let in_flight = {
            let (c, k, key, op) = (c.clone(), k.clone(), world.key.clone(), op.clone());
            tokio::spawn(async move { run(&op, &c, &k, &key).await })
        };
        tokio::time::sleep(delay).await;
        if victim != 1 {
            world.daemon.kill();
        }
        if victim != 0 {
            world.kms.kill();
        }
        let outcome = in_flight.await.unwrap();
        drop((c, k));
        if victim != 0 {
            world.kms.start();
        }
        if victim != 1 {
            world.daemon.start();
        }

        let (c, _k) = world.clients().await;
        let seen = observed(&c).await;
        if outcome.is_ok() {
            acknowledged += 1;
            // Acknowledged: it must be there whole.
            let mut expected = model.clone();
            let id = match &op {
                Op::Create { name, .. } => Some(find_by_name(&c, name).await),
                _ => None,
            };
            apply(&mut expected, &op, id);
            assert_eq!(
                (&seen.secrets, &seen.bound),
                (&expected.secrets, &expected.bound),
                "cycle {cycle}: acknowledged {op:?} (victim {victim})"
            );
        } else {
            cut += 1;
            assert!(
                all_or_nothing(&model, &op, &seen),
                "cycle {cycle}: {op:?} failed ({outcome:?}, victim {victim}) and left \
                 {seen:?}, from {model:?}"
            );
        }
        model = seen;
    }
    eprintln!(
        "{cycles} crash cycles, {n} changes ({acknowledged} in flight acknowledged before the \
         kill, {cut} cut off by it), {} secrets live",
        model.secrets.len()
    );
    // Both sides of the kill were exercised.
    assert!(acknowledged > 0 && cut > 0, "{acknowledged} {cut}");

    // The cloud's secret count, kept in the same write as each creation and deletion, agrees
    // with what is live (and so do the versions counted by the secrets): with the quota set two above it, exactly two more can be created.
    let live = model.secrets.len();
    world.daemon.stop();
    let mut daemon = Daemon::new(
        &world.kms,
        &format!("[limits]\nsecrets_per_cloud = {}\n", live + 2),
    );
    daemon.start();
    // The recount at start agrees with every counter the crashes left.
    assert!(!daemon.log().contains("disagreed"), "{}", daemon.log());
    let c = daemon.client().await;
    for extra in ["extra-1", "extra-2"] {
        c.create_secret(secret(extra, vec![set("k", "v")]))
            .await
            .unwrap_or_else(|e| panic!("{extra} with {live} secrets live: {e}"));
    }
    let refused = c
        .create_secret(secret("extra-3", vec![set("k", "v")]))
        .await
        .unwrap_err();
    assert_eq!(
        lockbox_client::error_code(&refused),
        lockbox_client::proto::ErrorCode::ResourceExhausted,
        "{refused}"
    );
}

/// The id of the live secret named `name`.
async fn find_by_name(c: &LockboxClient, name: &str) -> String {
    let mut page = Page::default();
    loop {
        let listed = c.list_secrets("", page.clone()).await.unwrap();
        if let Some(s) = listed.0.iter().find(|s| s.name == name) {
            return s.id.clone();
        }
        assert!(!listed.1.is_empty(), "no secret named {name}");
        page.page_token = listed.1;
    }
}
