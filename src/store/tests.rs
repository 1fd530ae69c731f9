//! Store tests: apply, reopen, rollback, idempotence, deltas.

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
    assert!(!st.db.tree_names().iter().any(|n| n == b"creds-1"));
}

#[test]
fn rollback_survives_cleared_rules() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    {
        let st = open(dir.path());
        st.apply_snapshot(&sign_snapshot(&key(), &snapshot(9)).unwrap(), now)
            .unwrap();
        // Lose the rules in force but keep `highest`.
        st.meta.remove(CURRENT).unwrap();
        st.db.flush().unwrap();
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
fn reopen_with_other_key_fails() {
    let dir = tempfile::tempdir().unwrap();
    let now = ts("2026-11-02T09:00:00Z");
    open(dir.path())
        .apply_snapshot(&sign_snapshot(&key(), &snapshot(1)).unwrap(), now)
        .unwrap();
    let mut k = TrustedKeys::new();
    k.add(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key());
    drop(open(dir.path()));
    assert!(matches!(
        Store::open(dir.path(), k, "gw1", "b1"),
        Err(StoreError::Verify(VerifyError::UnknownKey(_)))
    ));
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
