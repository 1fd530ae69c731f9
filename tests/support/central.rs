//! `portier central` under test: its config for a test broker and
//! PostgreSQL, the process, gateways that are just a journal and the real
//! uplink, and a spy that checks every ack against the database the moment
//! it is published.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portier::event::EventKind;
use portier::journal::{Journal, JournalAcker, JournalReader, JournalWriter};

use super::broker::{Broker, TestUplink, spawn_uplink};
use super::portier_bin;
use super::postgres::Postgres;

pub const T: Duration = Duration::from_secs(60);

/// A `central.toml` for `instance` in `dir`.
pub fn write_config(
    dir: &Path,
    broker: &Broker,
    pg: &Postgres,
    instance: &str,
    signing_key: &Path,
) -> PathBuf {
    let p = |f: &str| broker.pki().join(f).display().to_string();
    let path = dir.join(format!("{instance}.toml"));
    std::fs::write(
        &path,
        format!(
            "[central]\ninstance = \"{instance}\"\n\
             [postgres]\nconnect = \"{}\"\n\
             [broker]\nhost = \"localhost\"\nport = {}\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
             [signing]\nkey = {:?}\nbeacon_seconds = 2\n",
            pg.connect(),
            broker.port,
            p("ca.crt"),
            p("central.crt"),
            p("central.key"),
            signing_key.display().to_string(),
        ),
    )
    .unwrap();
    path
}

/// A running `portier central` (its log in a file; killed on drop).
pub struct CentralProc {
    pub child: Child,
    pub log: PathBuf,
}

impl CentralProc {
    pub fn spawn(config: &Path, env: &[(&str, &str)]) -> Self {
        let log = unique(config.with_extension("log"));
        let mut c = Command::new(portier_bin());
        c.args(["central", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "portier=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().unwrap();
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the broker connection is up and subscribed.
    pub fn wait_connected(&mut self) {
        let end = Instant::now() + T;
        while !self.log().contains("connected to the broker") {
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("portier central exited ({s}):\n{}", self.log());
            }
            assert!(
                Instant::now() < end,
                "central not connected:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rows this instance committed (from its debug log).
    pub fn rows_committed(&self) -> u64 {
        self.log()
            .lines()
            .filter(|l| l.contains("flush committed"))
            .filter_map(|l| {
                let plain = strip_ansi(l);
                plain
                    .split("rows=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A log line without its colour codes (`ESC [ … m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unique(p: PathBuf) -> PathBuf {
    let mut p = p;
    let mut n = 0;
    while p.exists() {
        n += 1;
        p = p.with_extension(format!("{n}.log"));
    }
    p
}

impl Drop for CentralProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gateway that is only its journal and its real uplink.
pub struct JournalGateway {
    pub name: String,
    _dir: Option<tempfile::TempDir>,
    pub journal: JournalWriter,
    pub reader: JournalReader,
    /// The uplink's half of the journal, until it connects.
    uplink_journal: Option<(JournalReader, JournalAcker)>,
    pub uplink: Option<TestUplink>,
    runtime: tokio::runtime::Runtime,
}

impl JournalGateway {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut g = Self::open_at(name, dir.path());
        g._dir = Some(dir);
        g
    }

    /// A gateway whose journal is in `journal_path` (created if missing).
    pub fn open_at(name: &str, journal_path: &Path) -> Self {
        let Journal {
            writer,
            reader,
            acker,
            ..
        } = Journal::open(journal_path).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self {
            name: name.to_owned(),
            _dir: None,
            journal: writer,
            reader: reader.clone(),
            uplink_journal: Some((reader, acker)),
            uplink: None,
            runtime,
        }
    }

    /// Append `kinds` (one journal transaction per 1000).
    pub fn append(&mut self, kinds: Vec<EventKind>) {
        self.append_at("2026-11-23T22:00:00Z".parse().unwrap(), kinds);
    }

    /// Append `kinds` happening at `at`.
    pub fn append_at(&mut self, at: jiff::Timestamp, kinds: Vec<EventKind>) {
        let mut last = 0;
        let mut kinds = kinds.into_iter().peekable();
        while kinds.peek().is_some() {
            let chunk: Vec<_> = kinds.by_ref().take(1000).collect();
            last = self.journal.append(at, chunk).unwrap().last().unwrap().seq;
        }
        if let Some(u) = &self.uplink {
            u.appended.send_replace(last);
        }
    }

    /// The uplink's half of the journal, to start an uplink of one's own.
    pub fn take_uplink_journal(&mut self) -> super::broker::UplinkJournal {
        self.uplink_journal.take().expect("one uplink per journal")
    }

    /// The runtime the uplink runs on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// Start the uplink (batch 500, window 20 000, resend after 2 s).
    pub fn connect(&mut self, broker: &Broker) {
        self.uplink = Some(spawn_uplink(
            &self.runtime,
            self.uplink_journal.take().expect("one uplink per journal"),
            broker,
            &self.name,
            |c| {
                c.batch = 500;
                c.window = 20_000;
            },
        ));
    }

    /// Stop the uplink and the runtime: the journal is closed (its lock
    /// released) once this returns, apart from the writer this holds.
    pub fn shut_down(self) {
        let Self {
            uplink, runtime, ..
        } = self;
        drop(uplink);
        runtime.shutdown_timeout(Duration::from_secs(10));
    }

    pub fn acked(&self) -> u64 {
        self.uplink.as_ref().map_or(0, |u| u.state.borrow().acked)
    }
}

/// Events of every kind the columns care about; `n` of them.
pub fn mixed_events(n: u64) -> Vec<EventKind> {
    (0..n)
        .map(|i| match i % 4 {
            0 => EventKind::AccessGranted {
                door: "side-entrance".into(),
                reader: "side-reader".into(),
                credential: format!("h10301:42:{i}"),
            },
            1 => EventKind::AccessDenied {
                door: "lab-1".into(),
                reader: "lab-reader".into(),
                credential: Some(format!("h10301:42:{i}")),
                reason: portier::rules::DenyReason::Blocked,
            },
            2 => EventKind::DoorClosed {
                door: "side-entrance".into(),
            },
            _ => EventKind::ExitRequest {
                door: "lab-1".into(),
            },
        })
        .collect()
}

/// Subscribes to every ack and, the moment one arrives, checks that the
/// database has settled every event up to it.
pub struct AckSpy {
    pub acks: Arc<Mutex<Vec<(String, u64)>>>,
    pub violations: Arc<Mutex<Vec<String>>>,
}

impl AckSpy {
    pub fn start(broker: &Broker, pg: &Postgres) -> Self {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let options = broker.options("ack-spy", "central");
        let (client, mut connection) = rumqttc::Client::new(options, 64);
        let connect = pg.connect();
        let pg_dir = connect.clone();
        let (a, v) = (acks.clone(), violations.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for n in connection.iter() {
                match n {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::ConnAck(_))) => {
                        let _ = client.subscribe("portier/v1/+/ack", rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        let gw = p.topic.split('/').nth(2).unwrap_or("").to_owned();
                        let ack: portier::uplink::wire::Ack =
                            serde_cbor::from_slice(&p.payload).unwrap();
                        let stored = count_upto(&pg_dir, &gw, ack.journal, ack.seq);
                        if stored != ack.seq {
                            v.lock().unwrap().push(format!(
                                "{gw}: ack {} published with {stored} events stored up to it",
                                ack.seq
                            ));
                        }
                        a.lock().unwrap().push((gw, ack.seq));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx.recv_timeout(T).expect("ack spy subscribed");
        Self { acks, violations }
    }
}

fn count_upto(
    connect: &str,
    gw: &str,
    journal: Option<portier::journal::JournalId>,
    seq: u64,
) -> u64 {
    let j = format!(
        "decode('{}', 'hex')",
        journal.unwrap_or(portier::journal::JournalId::NIL)
    );
    let host = connect
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("host="))
        .unwrap();
    let out = Command::new(super::postgres::bin("psql"))
        .args([
            "-X", "-A", "-t", "-h", host, "-U", "postgres", "-d", "postgres", "-c",
        ])
        // Settled: stored, or quarantined as the gateway's own unstorable
        // event (events_rejected.settles).
        .arg(format!(
            "SELECT count(*) FROM (SELECT seq FROM events WHERE gateway = '{gw}' AND journal = {j} \
             AND seq <= {seq} UNION SELECT seq FROM events_rejected WHERE gateway = '{gw}' \
             AND journal = {j} AND settles AND seq <= {seq}) s"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
