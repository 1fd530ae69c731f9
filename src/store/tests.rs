//! Store tests: apply, reopen, rollback, idempotence, deltas, recovery
//! from the last-good files.

use super::*;
use crate::rules::DenyReason;
use crate::rules::envelope::{sign_delta, sign_snapshot};
use crate::rules::tests::{delta, key, reason, req, snapshot, trusted, ts};

fn open(dir: &Path) -> Store {
    Store::open(dir, trusted(), "gw1", "b1").unwrap()
}

#[test]
fn apply_reopen_rollback_delta() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    let s5 = sign_snapshot(&key(), &snapshot(5)).unwrap();
    {
        let st = open(dir.path());
        assert!(matches!(
            st.decide(&req("lab", 1), now),
            Err(StoreError::Empty)
        ));
        let a = st.apply_snapshot(&s5, now).unwrap();
        assert_eq!(
            (a.version, a.generation, a.credentials, a.unchanged),
            (5, 1, 3, false)
        );
        assert_eq!(reason(st.decide(&req("lab", 1), now).unwrap()), None);
        assert!(st.apply_snapshot(&s5, now).unwrap().unchanged);
    }
    let st = open(dir.path());
    assert_eq!(st.version(), Some(5));
    assert_eq!(st.count_stored_credentials().unwrap(), 3);
    assert_eq!(reason(st.decide(&req("lab", 1), now).unwrap()), None);
    let s4 = sign_snapshot(&key(), &snapshot(4)).unwrap();
    assert!(matches!(
        st.apply_snapshot(&s4, now),
        Err(StoreError::Verify(VerifyError::Rollback {
            got: 4,
            have: 5
        }))
    ));
    let mut other = snapshot(5);
    other.credentials.pop();
    assert!(matches!(
        st.apply_snapshot(&sign_snapshot(&key(), &other).unwrap(), now),
        Err(StoreError::Verify(VerifyError::VersionReused(5)))
    ));
    // Delta: blocks card 1, adds 10, removes 3.
    let d = sign_delta(&key(), &delta(5, 6)).unwrap();
    let a = st.apply_delta(&d, now).unwrap();
    assert_eq!((a.version, a.credentials), (6, 3));
    assert_eq!(
        reason(st.decide(&req("lab", 1), now).unwrap()),
        Some(DenyReason::Blocked)
    );
    // Delivered again (MQTT QoS 1): a no-op. On an older base: refused.
    assert!(st.apply_delta(&d, now).unwrap().unchanged);
    let d2 = sign_delta(&key(), &delta(4, 5)).unwrap();
    assert!(matches!(
        st.apply_delta(&d2, now),
        Err(StoreError::Delta(DeltaError::BaseMismatch {
            have: 6,
            need: 4
        }))
    ));
    drop(st);
    let st = open(dir.path());
    assert_eq!(st.version(), Some(6));
    assert_eq!(reason(st.decide(&req("lab", 10), now).unwrap()), None);
    // A new full snapshot replaces generation 1 with 2.
    let s7 = sign_snapshot(&key(), &snapshot(7)).unwrap();
    assert_eq!(st.apply_snapshot(&s7, now).unwrap().generation, 2);
    assert_eq!(st.count_stored_credentials().unwrap(), 3);
    assert!(!st.db.tree_names().iter().any(|n| n == b"pages-1"));
    assert_eq!(files::generations(dir.path()).unwrap(), vec![2]);
    assert!(st.recovery().is_none());
}

#[test]
fn rollback_survives_a_lost_database_and_lost_files() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    open(dir.path())
        .apply_snapshot(&sign_snapshot(&key(), &snapshot(9)).unwrap(), now)
        .unwrap();
    // The whole sled directory is gone: rebuilt from the last-good file.
    std::fs::remove_dir_all(dir.path().join(SLED_DIR)).unwrap();
    let st = open(dir.path());
    assert_eq!(st.version(), Some(9));
    let r = st.recovery().expect("rebuilt").clone();
    assert!(r.reason.contains("no rules in force"), "{r:?}");
    assert_eq!((r.moved_aside, r.version), (None, Some(9)));
    assert_eq!(st.count_stored_credentials().unwrap(), 3);
    drop(st);
    // Database and snapshot files gone: no rules, but `highest` still
    // refuses a rollback.
    std::fs::remove_dir_all(dir.path().join(SLED_DIR)).unwrap();
    for g in files::generations(dir.path()).unwrap() {
        std::fs::remove_file(files::snapshot_path(dir.path(), g)).unwrap();
    }
    let st = open(dir.path());
    assert_eq!(st.version(), None);
    assert!(matches!(
        st.apply_snapshot(&sign_snapshot(&key(), &snapshot(8)).unwrap(), now),
        Err(StoreError::Verify(VerifyError::Rollback {
            got: 8,
            have: 9
        }))
    ));
}

#[test]
fn inconsistent_database_is_moved_aside_and_rebuilt_with_deltas() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    {
        let st = open(dir.path());
        st.apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
            .unwrap();
        st.apply_delta(&sign_delta(&key(), &delta(5, 6)).unwrap(), now)
            .unwrap();
        // Lose the credential pages behind sled's back.
        st.db.drop_tree(pages_name(1).as_bytes()).unwrap();
        st.db.flush().unwrap();
    }
    let st = open(dir.path());
    let r = st.recovery().expect("rebuilt").clone();
    assert!(
        r.reason
            .contains("credential pages of generation 1 missing"),
        "{r:?}"
    );
    let aside = r.moved_aside.expect("moved aside");
    assert!(aside.ends_with("sled.corrupt-1") && aside.join("db").exists());
    // The delta log was replayed: card 1 blocked, 10 added, 3 removed.
    assert_eq!((st.version(), st.credential_count()), (Some(6), Some(3)));
    assert_eq!(st.count_stored_credentials().unwrap(), 3);
    assert_eq!(
        reason(st.decide(&req("lab", 1), now).unwrap()),
        Some(DenyReason::Blocked)
    );
    assert_eq!(reason(st.decide(&req("lab", 10), now).unwrap()), None);
    assert_eq!(
        reason(st.decide(&req("lab", 3), now).unwrap()),
        Some(DenyReason::UnknownCredential)
    );
    // Later deltas go on top of the rebuilt state; a clean reopen does not
    // recover again.
    let mut d = delta(6, 7);
    d.blocks.clear();
    d.upserts.clear();
    d.removals = vec![crate::rules::CredentialKey::H10301 {
        facility: 42,
        number: 10,
    }];
    st.apply_delta(&sign_delta(&key(), &d).unwrap(), now)
        .unwrap();
    drop(st);
    let st = open(dir.path());
    assert!(st.recovery().is_none());
    assert_eq!((st.version(), st.credential_count()), (Some(7), Some(2)));
    assert_eq!(st.count_stored_credentials().unwrap(), 2);
}

#[test]
fn garbage_database_files_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    open(dir.path())
        .apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
        .unwrap();
    // Overwrite the log, then every file of the sled directory, with a
    // byte pattern.
    for only_log in [true, false] {
        for e in std::fs::read_dir(dir.path().join(SLED_DIR)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && (!only_log || p.ends_with("db")) {
                let n = std::fs::metadata(&p).unwrap().len() as usize;
                std::fs::write(&p, vec![0xa5; n.max(64)]).unwrap();
            }
        }
        let st = open(dir.path());
        let r = st.recovery().expect("recovered");
        eprintln!("only_log={only_log}: {r:?}");
        assert_eq!(r.version, Some(5));
        assert_eq!(st.version(), Some(5));
        assert_eq!(reason(st.decide(&req("lab", 1), now).unwrap()), None);
    }
}

#[test]
fn highest_raised_before_a_crashed_flip_still_accepts_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    let s6 = sign_snapshot(&key(), &snapshot(6)).unwrap();
    open(dir.path())
        .apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
        .unwrap();
    // As if killed after `highest` was written for version 6, before the flip.
    let digest = crate::rules::verify_snapshot(&s6, &trusted(), "gw1", "b1", now, None)
        .unwrap()
        .digest();
    files::write_highest(dir.path(), (6, digest)).unwrap();
    let st = open(dir.path());
    assert_eq!(st.version(), Some(5));
    assert_eq!(st.highest().unwrap(), Some((6, digest)));
    assert_eq!(st.apply_snapshot(&s6, now).unwrap().version, 6);
}

/// The central key after a rotation (the old one, `key()`, leaked).
fn new_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9; 32])
}

fn only_new_key() -> TrustedKeys {
    let mut k = TrustedKeys::new();
    k.add(new_key().verifying_key());
    k
}

/// Key rotation without an outage: the key that signed the rules in force
/// is removed from the trust list. The store still opens, keeps the rules
/// on disk but denies every card (`rules_untrusted`), refuses deltas, keeps
/// rollback protection, and takes the next snapshot signed by the new key.
#[test]
fn rules_signed_by_a_removed_key_open_untrusted_and_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    {
        let st = open(dir.path());
        st.apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
            .unwrap();
        st.apply_delta(&sign_delta(&key(), &delta(5, 6)).unwrap(), now)
            .unwrap();
        assert_eq!(st.trust(), RulesTrust::Trusted);
    }
    for _ in 0..2 {
        // Twice: an untrusted open changes nothing on disk.
        let st = Store::open(dir.path(), only_new_key(), "gw1", "b1").unwrap();
        assert_eq!(
            st.trust(),
            RulesTrust::Untrusted {
                key_id: crate::rules::envelope::key_id(&key().verifying_key()),
                version: Some(6)
            }
        );
        assert_eq!((st.version(), st.header().is_none()), (None, true));
        assert_eq!(
            reason(st.decide(&req("lab", 10), now).unwrap()),
            Some(DenyReason::RulesUntrusted)
        );
        assert!(matches!(
            st.apply_delta(&sign_delta(&new_key(), &delta(6, 7)).unwrap(), now),
            Err(StoreError::Untrusted { .. })
        ));
        assert_eq!(files::generations(dir.path()).unwrap(), vec![1]);
        assert_eq!(st.highest().unwrap().map(|h| h.0), Some(6));
    }
    let st = Store::open(dir.path(), only_new_key(), "gw1", "b1").unwrap();
    // Rollback protection still holds against the new key's snapshots…
    assert!(matches!(
        st.apply_snapshot(&sign_snapshot(&new_key(), &snapshot(5)).unwrap(), now),
        Err(StoreError::Verify(VerifyError::Rollback {
            got: 5,
            have: 6
        }))
    ));
    // …and the old key's snapshots are refused outright.
    assert!(matches!(
        st.apply_snapshot(&sign_snapshot(&key(), &snapshot(8)).unwrap(), now),
        Err(StoreError::Verify(VerifyError::UnknownKey(_)))
    ));
    let a = st
        .apply_snapshot(&sign_snapshot(&new_key(), &snapshot(7)).unwrap(), now)
        .unwrap();
    assert_eq!((a.version, a.generation, a.unchanged), (7, 2, false));
    assert_eq!(st.trust(), RulesTrust::Trusted);
    assert_eq!(reason(st.decide(&req("lab", 1), now).unwrap()), None);
    assert_eq!(files::generations(dir.path()).unwrap(), vec![2]);
    assert!(!st.db.tree_names().iter().any(|n| n == b"pages-1"));
    drop(st);
    let st = Store::open(dir.path(), only_new_key(), "gw1", "b1").unwrap();
    assert_eq!((st.trust(), st.version()), (RulesTrust::Trusted, Some(7)));
}

/// Central re-signs the very rules in force with the new key (same
/// version, same payload): accepted, although the version is not higher.
#[test]
fn the_same_rules_re_signed_with_the_new_key_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    open(dir.path())
        .apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
        .unwrap();
    let st = Store::open(dir.path(), only_new_key(), "gw1", "b1").unwrap();
    assert!(matches!(st.trust(), RulesTrust::Untrusted { .. }));
    let a = st
        .apply_snapshot(&sign_snapshot(&new_key(), &snapshot(5)).unwrap(), now)
        .unwrap();
    assert_eq!((a.version, a.generation, a.unchanged), (5, 2, false));
    assert_eq!(st.trust(), RulesTrust::Trusted);
    assert_eq!(reason(st.decide(&req("lab", 1), now).unwrap()), None);
}

/// A rebuild (damaged sled) of rules whose signer is no longer trusted
/// also opens untrusted; and a delta signed by the removed key makes the
/// whole set untrusted (a block in it must not be dropped).
#[test]
fn untrusted_rules_survive_a_rebuild_and_taint_a_trusted_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    let mut both = trusted();
    both.add(new_key().verifying_key());
    {
        let st = Store::open(dir.path(), both, "gw1", "b1").unwrap();
        st.apply_snapshot(&sign_snapshot(&new_key(), &snapshot(5)).unwrap(), now)
            .unwrap();
        // The delta (blocking card 1) is signed by the key that leaks.
        st.apply_delta(&sign_delta(&key(), &delta(5, 6)).unwrap(), now)
            .unwrap();
    }
    std::fs::remove_dir_all(dir.path().join(SLED_DIR)).unwrap();
    let st = Store::open(dir.path(), only_new_key(), "gw1", "b1").unwrap();
    assert!(matches!(st.trust(), RulesTrust::Untrusted { .. }));
    assert!(st.recovery().is_some());
    assert_eq!(
        reason(st.decide(&req("lab", 1), now).unwrap()),
        Some(DenyReason::RulesUntrusted)
    );
    // The delta log was not cut: the evidence stays until replaced.
    assert_eq!(files::read_deltas(dir.path(), 1).unwrap().len(), 1);
    st.apply_snapshot(&sign_snapshot(&new_key(), &snapshot(7)).unwrap(), now)
        .unwrap();
    assert_eq!(st.trust(), RulesTrust::Trusted);
}

#[test]
fn decisions_go_on_while_a_big_snapshot_is_applied() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    let st = open(dir.path());
    st.apply_snapshot(&sign_snapshot(&key(), &snapshot(5)).unwrap(), now)
        .unwrap();
    let mut big = snapshot(6);
    let template = big.credentials[2].clone();
    big.credentials.extend((10..60_000).map(|n| {
        let mut c = template.clone();
        c.key = crate::rules::CredentialKey::H10301 {
            facility: 1,
            number: n,
        };
        c
    }));
    let blob = sign_snapshot(&key(), &big).unwrap();
    let done = AtomicBool::new(false);
    let during = std::thread::scope(|s| {
        s.spawn(|| {
            st.apply_snapshot(&blob, now).unwrap();
            done.store(true, Ordering::SeqCst);
        });
        let mut during = 0u32;
        while !done.load(Ordering::SeqCst) {
            // Card 3 has lab access in both versions: never a deny, never
            // a half-applied state.
            assert_eq!(reason(st.decide(&req("lab", 3), now).unwrap()), None);
            during += 1;
        }
        during
    });
    assert_eq!(st.version(), Some(6));
    assert!(
        during > 10,
        "only {during} decisions while 60 000 credentials were applied: apply blocks decisions"
    );
}
