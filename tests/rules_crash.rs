//! Crash test of the rule store: a child `portier snapshot apply` of a
//! ~20 000-credential snapshot is SIGKILLed after a random delay, and the
//! parent reopens the store and checks that exactly one complete, verified
//! generation (the old or the new one) is in force. When sled cannot be
//! trusted after a kill, the store rebuilds from its last-good files and
//! says so; that counts as passing only if the rebuilt rules are complete.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use portier::rules::envelope::sign_snapshot;
use portier::rules::{
    Card, Credential, CredentialKey, Decision, Request, Snapshot, TrustedKeys, source,
};
use portier::store::Store;

const BASE: u64 = 20_000;
const ROUNDS: u64 = 100;

fn snapshot(version: u64) -> Snapshot {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rules.example.toml"),
    )
    .unwrap();
    let mut s = source::parse_rules(
        "rules.example.toml",
        &text,
        version,
        "2026-11-20T00:00:00Z".parse().unwrap(),
        "2036-11-20T00:00:00Z".parse().unwrap(),
    )
    .unwrap();
    s.credentials = (0..BASE + version)
        .map(|n| Credential {
            key: CredentialKey::H10304 {
                facility: 7,
                number: n,
            },
            display_name: Some(format!("holder {n} v{version}")),
            access_levels: vec!["building-any-time".into()],
            valid_from: None,
            valid_until: None,
            blocked: None,
            pin: None,
            extended_unlock: false,
            lockdown_exempt: false,
        })
        .collect();
    s
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn check(dir: &Path, keys: &TrustedKeys, allowed: &[u64], recovered: &mut u32) -> u64 {
    let st = Store::open(
        &dir.join("state/rules"),
        keys.clone(),
        "gw-university-1",
        "university-main",
    )
    .expect("store reopens and re-verifies");
    if let Some(r) = st.recovery() {
        eprintln!("recovered: {r:?}");
        *recovered += 1;
    }
    let Some(v) = st.version() else {
        assert!(
            allowed.contains(&0),
            "no rules in force but {allowed:?} expected"
        );
        return 0;
    };
    assert!(allowed.contains(&v), "version {v} not in {allowed:?}");
    assert_eq!(st.credential_count(), Some(BASE + v));
    assert_eq!(st.count_stored_credentials().unwrap(), BASE + v);
    // `highest` is made durable just before the flip, so it may be one
    // apply ahead of the rules in force, never behind.
    let h = st.highest().unwrap().map(|h| h.0).unwrap();
    assert!(h >= v && allowed.contains(&h), "highest {h}, in force {v}");
    // The last credential of this generation decides.
    let req = Request {
        door: "side-entrance".into(),
        card: Card::Key(CredentialKey::H10304 {
            facility: 7,
            number: BASE + v - 1,
        }),
        pin: None,
    };
    let d = st
        .decide(&req, "2026-11-25T09:00:00Z".parse().unwrap())
        .unwrap();
    assert!(matches!(d, Decision::Grant { .. }), "{d:?}");
    v
}

#[test]
// The test times a real apply to aim its kills: it may read the clock.
#[allow(clippy::disallowed_methods)]
fn sigkill_during_apply_leaves_one_complete_generation() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[3u8; 32]);
    std::fs::write(
        dir.path().join("central.pub"),
        hex::encode(key.verifying_key().as_bytes()),
    )
    .unwrap();
    let cfg = dir.path().join("portier.toml");
    std::fs::write(
        &cfg,
        "[gateway]\nid = \"gw-university-1\"\nbuilding = \"university-main\"\nstate_dir = \"state\"\n[trust]\ncentral_keys = [\"central.pub\"]\n",
    )
    .unwrap();
    let mut keys = TrustedKeys::new();
    keys.add(key.verifying_key());
    let snap = dir.path().join("snap.bin");
    let apply = || {
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(["snapshot", "apply", snap.to_str().unwrap(), "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut recovered = 0;
    // Round 0: a complete apply, timed, to aim the kills.
    std::fs::write(&snap, sign_snapshot(&key, &snapshot(1)).unwrap()).unwrap();
    let t = std::time::Instant::now();
    assert!(apply().wait().unwrap().success());
    let first = t.elapsed();
    assert_eq!(check(dir.path(), &keys, &[1], &mut recovered), 1);
    // A second complete apply replaces a generation (the realistic case).
    let t = std::time::Instant::now();
    let body = sign_snapshot(&key, &snapshot(2)).unwrap();
    let build = t.elapsed();
    std::fs::write(&snap, body).unwrap();
    let t = std::time::Instant::now();
    assert!(apply().wait().unwrap().success());
    let full = t.elapsed().max(first);
    let t = std::time::Instant::now();
    assert_eq!(check(dir.path(), &keys, &[2], &mut recovered), 2);
    eprintln!("build {build:?} apply {full:?} check {:?}", t.elapsed());
    let max_ms = (full.as_millis() as u64 * 12 / 10).max(5);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut old, mut new) = (0, 0);
    let mut current = 2;
    for round in 0..ROUNDS {
        let version = current + 1;
        std::fs::write(&snap, sign_snapshot(&key, &snapshot(version)).unwrap()).unwrap();
        let mut child = apply();
        std::thread::sleep(Duration::from_millis(rng.next() % max_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        // Killed, or finished successfully before the kill; never failed.
        assert!(
            status.success() || status.code().is_none(),
            "round {round}: apply failed on its own: {status}"
        );
        let v = check(dir.path(), &keys, &[current, version], &mut recovered);
        if v == version {
            new += 1;
        } else {
            old += 1;
        }
        current = v;
    }
    eprintln!(
        "full apply {full:?}, kills within {max_ms} ms: {old} rounds kept the old generation, {new} the new, {recovered} reopens rebuilt from the last-good files"
    );
    assert!(old > 0, "no kill landed before the flip; tune the delay");
    assert!(new > 0, "no apply completed; tune the delay");
}
