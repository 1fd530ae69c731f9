//! Unit tests of the decision engine, the envelope and deltas.

use super::envelope::{Block, sign_delta, sign_snapshot};
use super::*;
use ed25519_dalek::SigningKey;

pub(crate) fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn key() -> SigningKey {
    SigningKey::from_bytes(&[1u8; 32])
}

pub(crate) fn trusted() -> TrustedKeys {
    let mut k = TrustedKeys::new();
    k.add(key().verifying_key());
    k
}

pub(crate) fn card(n: u64) -> CredentialKey {
    CredentialKey::H10301 {
        facility: 42,
        number: n,
    }
}

pub(crate) fn cred(n: u64, levels: &[&str]) -> Credential {
    Credential {
        key: card(n),
        display_name: Some(format!("card {n}")),
        access_levels: levels.iter().map(|s| s.to_string()).collect(),
        valid_from: None,
        valid_until: None,
        blocked: None,
        pin: None,
        extended_unlock: false,
        lockdown_exempt: false,
    }
}

pub(crate) fn snapshot(version: u64) -> Snapshot {
    let toml = r#"
gateway_id = "gw1"
building = "b1"
time_zone = "Europe/Amsterdam"
holidays = ["2026-12-25"]
[schedules.office]
working_days_only = true
mon = ["08:00-18:00"]
tue = ["08:00-18:00"]
wed = ["08:00-18:00"]
thu = ["08:00-18:00"]
fri = ["08:00-18:00"]
[schedules.night]
fri = ["22:00-06:00"]
sun = ["01:30-03:30"]
[schedules.always]
always = true
[doors.front]
class = "revolving"
[doors.lab]
[door_groups]
all = ["front", "lab"]
lab = ["lab"]
[access_levels]
office = [{ door_group = "all", schedule = "office" }]
night = [{ door_group = "all", schedule = "night" }]
lab = [{ door_group = "lab", schedule = "always" }]
[max_age.revolving]
hours = 48
on_too_old = "fail_secure"
[max_age.standard]
hours = 48
on_too_old = "keep_deciding"
"#;
    let mut s = source::parse_rules(
        "t.toml",
        toml,
        version,
        ts("2026-11-01T00:00:00Z"),
        ts("2030-01-01T00:00:00Z"),
    )
    .unwrap();
    s.credentials = vec![cred(1, &["office"]), cred(2, &["night"]), cred(3, &["lab"])];
    s
}

fn verified(version: u64) -> VerifiedSnapshot {
    let blob = sign_snapshot(&key(), &snapshot(version)).unwrap();
    verify_snapshot(
        &blob,
        &trusted(),
        "gw1",
        "b1",
        ts("2026-11-02T00:00:00Z"),
        None,
    )
    .unwrap()
}

/// `s` signed and verified as the gateway would, on 2026-11-01.
fn signed(s: &Snapshot) -> VerifiedSnapshot {
    verify_snapshot(
        &sign_snapshot(&key(), s).unwrap(),
        &trusted(),
        "gw1",
        "b1",
        ts("2026-11-01T01:00:00Z"),
        None,
    )
    .unwrap()
}

pub(crate) fn req(door: &str, n: u64) -> Request {
    Request {
        door: door.into(),
        card: Card::Key(card(n)),
        pin: None,
    }
}

pub(crate) fn reason(d: Decision) -> Option<DenyReason> {
    match d {
        Decision::Deny(r) => Some(r),
        Decision::Grant { .. } => None,
    }
}

#[test]
fn office_hours_and_holiday() {
    let v = verified(1);
    // Monday 2026-11-02 10:00 CET = 09:00Z
    assert_eq!(
        reason(decide(&v, &req("lab", 1), ts("2026-11-02T09:00:00Z"))),
        None
    );
    assert_eq!(
        reason(decide(&v, &req("lab", 1), ts("2026-11-02T17:30:00Z"))),
        Some(DenyReason::OutsideSchedule)
    );
    // Holiday Friday 2026-12-25 10:00
    assert_eq!(
        reason(decide(&v, &req("lab", 1), ts("2026-12-25T09:00:00Z"))),
        Some(DenyReason::OutsideSchedule)
    );
    assert_eq!(
        reason(decide(&v, &req("front", 3), ts("2026-11-02T09:00:00Z"))),
        Some(DenyReason::NoAccess)
    );
    assert_eq!(
        reason(decide(&v, &req("lab", 99), ts("2026-11-02T09:00:00Z"))),
        Some(DenyReason::UnknownCredential)
    );
}

#[test]
fn midnight_span() {
    let v = verified(1);
    // Friday 2026-11-06 23:00 local (22:00Z) and Saturday 05:00 local (04:00Z).
    assert_eq!(
        reason(decide(&v, &req("lab", 2), ts("2026-11-06T22:00:00Z"))),
        None
    );
    assert_eq!(
        reason(decide(&v, &req("lab", 2), ts("2026-11-07T04:00:00Z"))),
        None
    );
    assert_eq!(
        reason(decide(&v, &req("lab", 2), ts("2026-11-07T05:30:00Z"))),
        Some(DenyReason::OutsideSchedule)
    );
}

#[test]
fn dst_spring_forward_2027_03_28() {
    let v = verified(1);
    // Sunday 01:30-03:30 local. 02:00-03:00 does not exist on 2027-03-28.
    // 00:59:59Z = 01:59:59 CET (open); 01:00Z = 03:00 CEST (open);
    // 01:30Z = 03:30 CEST (closed).
    let at = |s| reason(decide(&v, &req("lab", 2), ts(s)));
    assert_eq!(at("2027-03-28T00:30:00Z"), None);
    assert_eq!(at("2027-03-28T00:59:59Z"), None);
    assert_eq!(at("2027-03-28T01:00:00Z"), None);
    assert_eq!(at("2027-03-28T01:29:59Z"), None);
    assert_eq!(
        at("2027-03-28T01:30:00Z"),
        Some(DenyReason::OutsideSchedule)
    );
    assert_eq!(
        at("2027-03-28T00:29:59Z"),
        Some(DenyReason::OutsideSchedule)
    );
}

#[test]
fn dst_fall_back_2026_10_25() {
    let mut s = snapshot(1);
    s.issued_at = ts("2026-10-01T00:00:00Z");
    s.max_age.clear();
    let blob = sign_snapshot(&key(), &s).unwrap();
    let v = verify_snapshot(
        &blob,
        &trusted(),
        "gw1",
        "b1",
        ts("2026-10-02T00:00:00Z"),
        None,
    )
    .unwrap();
    let at = |s| reason(decide(&v, &req("lab", 2), ts(s)));
    // 02:30 local happens twice: 00:30Z (CEST) and 01:30Z (CET). Both open.
    assert_eq!(at("2026-10-25T00:30:00Z"), None);
    assert_eq!(at("2026-10-25T01:30:00Z"), None);
    // 03:30 local = 02:30Z: closed. 01:30 local = 23:30Z the day before: open.
    assert_eq!(
        at("2026-10-25T02:30:00Z"),
        Some(DenyReason::OutsideSchedule)
    );
    assert_eq!(at("2026-10-24T23:30:00Z"), None);
    assert_eq!(
        at("2026-10-24T23:29:59Z"),
        Some(DenyReason::OutsideSchedule)
    );
}

#[test]
fn check_order() {
    let mut s = snapshot(1);
    let mut c = cred(5, &["office"]);
    c.blocked = Some(BlockReason::Lost);
    c.valid_from = Some(ts("2027-01-01T00:00:00Z"));
    let mut p = cred(6, &["office"]);
    p.pin = Some(PinHash::new("s6", "1234"));
    let mut e = cred(7, &["office"]);
    e.valid_until = Some(ts("2026-11-01T12:00:00Z"));
    let mut x = cred(8, &["lab"]);
    x.lockdown_exempt = true;
    x.extended_unlock = true;
    s.credentials.extend([c, p, e, x]);
    let v = signed(&s);
    let mon = ts("2026-11-02T09:00:00Z");
    assert_eq!(
        reason(decide(&v, &req("lab", 5), mon)),
        Some(DenyReason::Blocked)
    );
    assert_eq!(
        reason(decide(&v, &req("lab", 7), mon)),
        Some(DenyReason::Expired)
    );
    let mut r = req("lab", 6);
    assert_eq!(reason(decide(&v, &r, mon)), Some(DenyReason::PinRequired));
    r.pin = Some("0000".into());
    assert_eq!(reason(decide(&v, &r, mon)), Some(DenyReason::WrongPin));
    r.pin = Some("1234".into());
    assert_eq!(reason(decide(&v, &r, mon)), None);
    let r = req("lab", 8);
    assert!(matches!(
        decide(&v, &r, mon),
        Decision::Grant {
            extended_unlock: true,
            lockdown_exempt: true,
            rules_too_old: false,
            ..
        }
    ));
    // Bad parity raw bits come first.
    let bad = Request {
        door: "lab".into(),
        card: Card::Raw {
            bytes: vec![0x95, 0x01, 0xf4, 0xc0],
            bits: 26,
        },
        pin: None,
    };
    assert_eq!(reason(decide(&v, &bad, mon)), Some(DenyReason::BadFormat));
    // Rules too old: revolving fails secure, standard keeps deciding.
    let late = ts("2026-11-03T09:00:00Z");
    assert_eq!(
        reason(decide(&v, &req("front", 1), late)),
        Some(DenyReason::RulesTooOld)
    );
    assert!(matches!(
        decide(&v, &req("lab", 1), late),
        Decision::Grant {
            rules_too_old: true,
            ..
        }
    ));
    // Not yet valid (unblocked copy).
    let mut s2 = s.clone();
    s2.credentials[3].blocked = None;
    let v2 = verify_snapshot(
        &sign_snapshot(&key(), &s2).unwrap(),
        &trusted(),
        "gw1",
        "b1",
        ts("2026-11-01T01:00:00Z"),
        None,
    )
    .unwrap();
    assert_eq!(
        reason(decide(&v2, &req("lab", 5), mon)),
        Some(DenyReason::NotYetValid)
    );
}

#[test]
fn deny_reason_names() {
    for r in [
        DenyReason::UnknownCredential,
        DenyReason::Blocked,
        DenyReason::NotYetValid,
        DenyReason::Expired,
        DenyReason::NoAccess,
        DenyReason::OutsideSchedule,
        DenyReason::Lockdown,
        DenyReason::BadFormat,
        DenyReason::RulesTooOld,
        DenyReason::PinRequired,
        DenyReason::WrongPin,
        DenyReason::RulesUntrusted,
    ] {
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

#[test]
fn verify_errors_in_order() {
    let now = ts("2026-11-02T00:00:00Z");
    let good = sign_snapshot(&key(), &snapshot(5)).unwrap();
    let v = |b: &[u8], gw: &str, last| verify_snapshot(b, &trusted(), gw, "b1", now, last);
    assert!(matches!(
        v(b"\xff\x00garbage", "gw1", None),
        Err(VerifyError::Malformed(_))
    ));
    let other = SigningKey::from_bytes(&[2u8; 32]);
    let foreign = sign_snapshot(&other, &snapshot(5)).unwrap();
    assert!(matches!(
        v(&foreign, "gw1", None),
        Err(VerifyError::UnknownKey(_))
    ));
    let mut blob = SignedBlob::from_cbor(&good).unwrap();
    blob.payload[10] ^= 1;
    assert!(matches!(
        v(&blob.to_cbor(), "gw1", None),
        Err(VerifyError::BadSignature)
    ));
    assert!(matches!(
        v(&good, "gw2", None),
        Err(VerifyError::WrongGateway { .. })
    ));
    let mut s = snapshot(5);
    s.schema = 9;
    assert!(matches!(
        v(&sign_snapshot(&key(), &s).unwrap(), "gw1", None),
        Err(VerifyError::UnsupportedSchema(9))
    ));
    let mut s = snapshot(5);
    s.expires_at = ts("2026-11-01T12:00:00Z");
    assert!(matches!(
        v(&sign_snapshot(&key(), &s).unwrap(), "gw1", None),
        Err(VerifyError::Expired(_))
    ));
    let ok = v(&good, "gw1", None).unwrap();
    assert!(matches!(
        v(&good, "gw1", Some((6, [0; 32]))),
        Err(VerifyError::Rollback { got: 5, have: 6 })
    ));
    assert!(matches!(
        v(&good, "gw1", Some((5, [0; 32]))),
        Err(VerifyError::VersionReused(5))
    ));
    assert!(v(&good, "gw1", Some((5, ok.digest()))).is_ok());
    // A delta signature is not a snapshot signature.
    let d = delta(5, 6);
    assert!(matches!(
        v(&sign_delta(&key(), &d).unwrap(), "gw1", None),
        Err(VerifyError::BadSignature)
    ));
    // Key rotation: two trusted keys.
    let mut two = trusted();
    two.add(other.verifying_key());
    assert!(verify_snapshot(&foreign, &two, "gw1", "b1", now, None).is_ok());
}

pub(crate) fn delta(base: u64, version: u64) -> Delta {
    Delta {
        base_version: base,
        version,
        issued_at: ts("2026-11-02T00:00:00Z"),
        expires_at: ts("2030-01-01T00:00:00Z"),
        gateway_id: "gw1".into(),
        building: "b1".into(),
        blocks: vec![Block {
            card: card(1),
            reason: BlockReason::Stolen,
        }],
        unblocks: vec![],
        upserts: vec![cred(10, &["lab"])],
        removals: vec![card(3)],
    }
}

#[test]
fn deltas() {
    let v = verified(5);
    let now = ts("2026-11-02T09:00:00Z");
    let d = verify_delta(
        &sign_delta(&key(), &delta(5, 6)).unwrap(),
        &trusted(),
        "gw1",
        "b1",
        now,
    )
    .unwrap();
    let n = apply_delta(&v, &d).unwrap();
    assert_eq!(n.version(), 6);
    assert_eq!(
        reason(decide(&n, &req("lab", 1), now)),
        Some(DenyReason::Blocked)
    );
    assert_eq!(reason(decide(&n, &req("lab", 10), now)), None);
    assert_eq!(
        reason(decide(&n, &req("lab", 3), now)),
        Some(DenyReason::UnknownCredential)
    );
    // The same delta again is a no-op; another one on the old base is not.
    assert_eq!(apply_delta(&n, &d).unwrap().version(), 6);
    let mut other = delta(5, 6);
    other.blocks.clear();
    let other = verify_delta(
        &sign_delta(&key(), &other).unwrap(),
        &trusted(),
        "gw1",
        "b1",
        now,
    )
    .unwrap();
    let err = apply_delta(&n, &other).unwrap_err();
    assert!(matches!(err, DeltaError::BaseMismatch { have: 6, need: 5 }));
    assert!(err.to_string().contains("full snapshot"));
    assert!(matches!(
        verify_delta(
            &sign_delta(&key(), &delta(5, 6)).unwrap(),
            &trusted(),
            "gw9",
            "b1",
            now
        ),
        Err(VerifyError::WrongGateway { .. })
    ));
}

#[test]
fn toml_errors_name_line_and_key() {
    let text = "gateway_id = \"g\"\nbuilding = \"b\"\ntime_zone = \"Europe/Amsterdam\"\n[doors.a]\nclass = 5\n";
    let e = source::parse_rules(
        "r.toml",
        text,
        1,
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("r.toml:5: key `class`"), "{e}");
    let text = "gateway_id = \"g\"\nbuilding = \"b\"\ntime_zone = \"Mars/Base\"\n";
    let e = source::parse_rules(
        "r.toml",
        text,
        1,
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Mars/Base"), "{e}");
    // The command line sets the version, not the file.
    let text = "gateway_id = \"g\"\nbuilding = \"b\"\nversion = 9\ntime_zone = \"UTC\"\n";
    let e = source::parse_rules(
        "r.toml",
        text,
        1,
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("r.toml:3: key `version`: set by"), "{e}");
    let e = source::parse_rules(
        "r.toml",
        "gateway_id = \"g\"\nbuilding = \"b\"\ntime_zone = \"UTC\"\ncolour = 1\n",
        1,
        Timestamp::UNIX_EPOCH,
        Timestamp::UNIX_EPOCH,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("r.toml:4:") && e.contains("colour"), "{e}");
}

#[test]
fn interval_parse() {
    assert!("08:00-18:00".parse::<Interval>().is_ok());
    assert!("00:00-24:00".parse::<Interval>().is_ok());
    assert!("25:00-18:00".parse::<Interval>().is_err());
    assert!("0800".parse::<Interval>().is_err());
    assert_eq!(
        "22:00-06:00".parse::<Interval>().unwrap().to_string(),
        "22:00-06:00"
    );
}

#[test]
fn credential_key_text_round_trip() {
    for k in [
        card(1001),
        CredentialKey::Raw {
            data: "abf0/12".into(),
        },
    ] {
        assert_eq!(k.to_string().parse::<CredentialKey>().unwrap(), k);
    }
}

/// Duress PINs: the plus-one form (9 wraps to 0) and a configured code
/// open as the holder's own PIN does, and `is_duress` tells them apart;
/// the own PIN is never duress, anything else stays `wrong_pin`, and
/// without a rule nothing is duress.
#[test]
fn duress_pins() {
    let mut s = snapshot(1);
    let mut p = cred(6, &["lab"]);
    p.pin = Some(PinHash::new("s6", "1239"));
    s.credentials.push(p);
    s.duress = Some(DuressRule {
        pin_plus_one: true,
        codes: vec![PinHash::new("d", "999911")],
    });
    let v = signed(&s);
    let mon = ts("2026-11-02T09:00:00Z");
    let own = v.credentials()[&card(6)].pin.clone().unwrap();
    let with = |pin: &str| {
        let mut r = req("lab", 6);
        r.pin = Some(pin.into());
        reason(decide(&v, &r, mon))
    };
    for (pin, granted, duress) in [
        ("1239", true, false),   // the own PIN
        ("1230", true, true),    // last digit + 1, 9 wraps to 0
        ("999911", true, true),  // the configured code
        ("1231", false, false),  // + 2
        ("1238", false, false),  // - 1
        ("12390", false, false), // a digit more
        ("", false, false),
        ("123\u{e9}", false, false), // not ASCII: never a panic
    ] {
        assert_eq!(with(pin).is_none(), granted, "{pin:?}");
        assert_eq!(v.header().is_duress(&own, pin), duress, "{pin:?}");
    }
    assert_eq!(with("1231"), Some(DenyReason::WrongPin));

    let mut plain = s.clone();
    plain.duress = None;
    let v = signed(&plain);
    assert!(!v.header().is_duress(&own, "1230"));
    let mut r = req("lab", 6);
    r.pin = Some("1230".into());
    assert_eq!(reason(decide(&v, &r, mon)), Some(DenyReason::WrongPin));
}

/// More duress codes than the bound are refused when the rules are read.
#[test]
fn too_many_duress_codes_are_refused() {
    let mut s = snapshot(1);
    s.duress = Some(DuressRule {
        pin_plus_one: false,
        codes: (0..=MAX_DURESS_CODES)
            .map(|i| PinHash::new("d", &i.to_string()))
            .collect(),
    });
    let e = Header::new(s).unwrap_err();
    assert!(e.to_string().contains("duress.codes"), "{e}");
}
