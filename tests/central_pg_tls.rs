//! TLS from `portier central` to a real PostgreSQL (`ssl = on`, the
//! server certificate and CA from `scripts/dev-pki`), `sslmode =
//! "verify-full"`: a server certificate that chains to the CA and names
//! the host connects; another CA or another host name is refused; a
//! server without TLS is refused (never used in plain text); a client
//! certificate is the login where `pg_hba.conf` says `cert`, and the
//! service stores a gateway's events over that connection.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::path::Path;
use std::process::Command;

use support::broker::Broker;
use support::central::{CentralProc, JournalGateway, T, mixed_events};
use support::postgres::{Postgres, TcpAuth};
use support::wait_for;

/// A `central.toml` with `[postgres]` as given (the broker's PKI for the
/// rest).
fn config(dir: &Path, broker: &Broker, name: &str, postgres: &str) -> std::path::PathBuf {
    let p = |f: &str| broker.pki().join(f).display().to_string();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[central]\ninstance = \"{name}\"\n\
             [postgres]\n{postgres}\n\
             [broker]\nhost = \"localhost\"\nport = {}\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
             [signing]\nkey = {:?}\nbeacon_seconds = 2\n",
            broker.port,
            p("ca.crt"),
            p("central.crt"),
            p("central.key"),
            p("central-signing.key"),
        ),
    )
    .unwrap();
    path
}

/// `portier central --config … migrate`: (success, stderr).
fn migrate(config: &Path) -> (bool, String) {
    let out = Command::new(support::portier_bin())
        .args(["central", "--config"])
        .arg(config)
        .arg("migrate")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Another CA (and its certificates) than the broker's.
fn other_pki(dir: &Path) -> std::path::PathBuf {
    let out_dir = dir.join("other-pki");
    let out = Command::new(support::repo().join("scripts/dev-pki"))
        .arg(&out_dir)
        .env("PORTIER_BIN", support::portier_bin())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir
}

#[test]
fn verify_full_connects_only_to_the_named_host_with_the_ca_s_certificate() {
    let broker = Broker::start(&["gw-a"]);
    let pg = Postgres::start_tls(broker.pki(), TcpAuth::Tls);
    let port = pg.tcp_port.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = broker.pki().join("ca.crt");
    let other = other_pki(dir.path()).join("ca.crt");

    // The wrong CA: refused, nothing migrated.
    let c = config(
        dir.path(),
        &broker,
        "wrong-ca",
        &localhost(port, &format!("sslmode = \"verify-full\"\nca = {other:?}")),
    );
    let (ok, err) = migrate(&c);
    assert!(!ok && err.contains("certificate"), "{err}");
    assert_nothing_migrated(&pg);

    // The right CA but a host name the certificate does not carry (the
    // address is the server's): refused.
    let c = config(
        dir.path(),
        &broker,
        "wrong-name",
        &format!(
            "connect = \"host=db.wrong.example hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres\"\n\
             ca = {ca:?}"
        ),
    );
    let (ok, err) = migrate(&c);
    assert!(!ok && err.contains("certificate"), "{err}");

    // Both right (verify-full is the default over TCP): migrated.
    let c = config(
        dir.path(),
        &broker,
        "right",
        &localhost(port, &format!("ca = {ca:?}")),
    );
    let (ok, err) = migrate(&c);
    assert!(ok, "{err}");
    assert!(pg.count("SELECT count(*) FROM central_schema") >= 1);

    // Plain TCP to this server is refused by its pg_hba.conf: the TLS
    // above is what let central in.
    let c = config(
        dir.path(),
        &broker,
        "plain",
        &localhost(port, "sslmode = \"disable\""),
    );
    let (ok, err) = migrate(&c);
    assert!(!ok && err.contains("no encryption"), "{err}");
}

/// A `[postgres]` section for the test server on this machine, as
/// `postgres`, with `rest` (the TLS keys) after the connect string.
fn localhost(port: u16, rest: &str) -> String {
    format!("connect = \"host=localhost port={port} user=postgres dbname=postgres\"\n{rest}")
}

/// Central refused before touching the database.
fn assert_nothing_migrated(pg: &Postgres) {
    assert_eq!(
        pg.count("SELECT count(*) FROM pg_tables WHERE tablename = 'central_schema'"),
        0,
        "central migrated over a connection it should have refused"
    );
}

#[test]
fn verify_full_refuses_a_server_without_tls() {
    let broker = Broker::start(&["gw-a"]);
    let pg = Postgres::start_tcp();
    let port = pg.tcp_port.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = broker.pki().join("ca.crt");
    let c = config(
        dir.path(),
        &broker,
        "tls",
        &localhost(port, &format!("sslmode = \"verify-full\"\nca = {ca:?}")),
    );
    let (ok, err) = migrate(&c);
    assert!(!ok && err.contains("TLS"), "{err}");
    assert_nothing_migrated(&pg);
    // The same server in plain text when the config says so.
    let c = config(
        dir.path(),
        &broker,
        "plain",
        &localhost(port, "sslmode = \"disable\""),
    );
    let (ok, err) = migrate(&c);
    assert!(ok, "{err}");
}

#[test]
fn a_client_certificate_logs_in_and_events_are_stored_over_tls() {
    const N: u64 = 500;
    let broker = Broker::start(&["gw-a"]);
    let pg = Postgres::start_tls(broker.pki(), TcpAuth::TlsClientCert);
    // The certificate's CN is the role.
    pg.psql("CREATE ROLE central LOGIN SUPERUSER");
    let port = pg.tcp_port.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| broker.pki().join(f);
    let connect = format!("connect = \"host=localhost port={port} user=central dbname=postgres\"");
    // Without the certificate: refused by the server.
    let c = config(
        dir.path(),
        &broker,
        "no-cert",
        &format!("{connect}\nca = {:?}", p("ca.crt")),
    );
    let (ok, err) = migrate(&c);
    assert!(!ok && err.contains("certificate"), "{err}");
    // With it: the service runs and stores the gateway's events.
    let c = config(
        dir.path(),
        &broker,
        "central-1",
        &format!(
            "{connect}\nsslmode = \"verify-full\"\nca = {:?}\ncert = {:?}\nkey = {:?}",
            p("ca.crt"),
            p("central.crt"),
            p("central.key")
        ),
    );
    let mut central = CentralProc::spawn(&c, &[]);
    central.wait_connected();
    let mut gw = JournalGateway::new("gw-a");
    gw.append(mixed_events(N));
    gw.connect(&broker);
    wait_for(T, "every event acked over the TLS connection", || {
        gw.acked() == N
    });
    assert_eq!(pg.count("SELECT count(*) FROM events"), N as i64);
    let ssl = pg.psql(
        "SELECT s.ssl, s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'portier-central' ORDER BY a.backend_start LIMIT 1",
    );
    assert_eq!(ssl, "t|/CN=central", "{}", central.log());
}
