//! `scripts/dev-pki`: a CA, broker, central and per-gateway certificates
//! that verify against the CA, private keys readable by their owner only,
//! the central signing key, and a Mosquitto ACL that keeps each gateway to
//! its own topics.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn the_dev_pki_is_complete_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(support::repo().join("scripts/dev-pki"))
        .arg(dir.path())
        .args(["--gateways", "gw-a,gw-b"])
        .env("PORTIER_BIN", support::portier_bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = |f: &str| dir.path().join(f);
    for cert in [
        "broker.crt",
        "central.crt",
        "gw-a.crt",
        "gw-b.crt",
        "gw-a-admin.crt",
    ] {
        let v = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(p("ca.crt"))
            .arg(p(cert))
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{cert}: {}",
            String::from_utf8_lossy(&v.stdout)
        );
    }
    // A gateway's client certificate names the gateway: the broker's identity.
    let subject = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(p("gw-b.crt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&subject.stdout).contains("CN = gw-b"));
    for key in ["ca.key", "broker.key", "gw-a.key", "central-signing.key"] {
        let mode = std::fs::metadata(p(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
    let acl = std::fs::read_to_string(p("mosquitto.acl")).unwrap();
    assert!(acl.contains("pattern read portier/v1/%u/command"));
    assert!(
        !acl.contains("pattern readwrite portier/v1/#"),
        "gateways must not see each other"
    );
    let conf = std::fs::read_to_string(p("mosquitto.conf")).unwrap();
    assert!(
        conf.contains("require_certificate true") && conf.contains("use_identity_as_username true")
    );
}
