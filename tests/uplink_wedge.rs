//! An uplink that cannot be wedged, against a real Mosquitto over mutual
//! TLS: an impossible ack (beyond what was sent, 2^64-1) is an alarm and
//! deletes nothing; a gateway killed (SIGKILL) between the broker's
//! delivery of a delta and its apply gets the delta again; an oversized
//! message is refused with an alarm; an undecodable journal record is
//! replaced by a `journal_record_skipped` event and the rest flows.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use portier::driver::uplink::Inbound;
use portier::event::EventKind;
use portier::journal::{Journal, JournalReader, JournalWriter};
use portier::uplink::wire::Ack;
use support::broker::{Broker, Central, TestUplink, spawn_uplink, spawn_uplink_with};
use support::wait_for;

const GW: &str = "gw-a";
const T: Duration = Duration::from_secs(30);
const CHILD_ENV: &str = "PORTIER_UPLINK_WEDGE_CHILD";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn append(writer: &mut JournalWriter, uplink: &TestUplink, n: u64) {
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    let kinds = (0..n)
        .map(|i| EventKind::DoorClosed {
            door: format!("door-{i}").into(),
        })
        .collect();
    let done = writer.append(at, kinds).unwrap();
    uplink.appended.send_replace(done.last().unwrap().seq);
}

/// The next alarm the uplink asked to journal.
fn alarm(rt: &tokio::runtime::Runtime, uplink: &mut TestUplink) -> EventKind {
    rt.block_on(async { tokio::time::timeout(T, uplink.alarms.recv()).await })
        .expect("an alarm")
        .unwrap()
}

/// The journal's one segment file in `dir`.
fn only_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    segments.pop().unwrap()
}

fn segment_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(only_segment(dir)).unwrap().len()
}

struct Gateway {
    _dir: tempfile::TempDir,
    writer: JournalWriter,
    reader: JournalReader,
    rt: tokio::runtime::Runtime,
    /// Goes with the uplink when it starts.
    acker: Option<portier::journal::JournalAcker>,
}

impl Gateway {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path();
        let Journal {
            writer,
            reader,
            acker,
            ..
        } = Journal::open(journal_path).unwrap();
        Self {
            _dir: dir,
            writer,
            reader,
            rt: runtime(),
            acker: Some(acker),
        }
    }

    fn uplink(
        &mut self,
        broker: &Broker,
        tune: impl FnOnce(&mut portier::uplink::UplinkConfig),
    ) -> TestUplink {
        let acker = self.acker.take().expect("one uplink per journal");
        spawn_uplink(&self.rt, (self.reader.clone(), acker), broker, GW, tune)
    }
}

#[test]
fn an_impossible_ack_is_an_alarm_and_deletes_nothing() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, false);
    let mut gw = Gateway::open();
    let mut uplink = gw.uplink(&broker, |_| {});
    append(&mut gw.writer, &uplink, 10);
    wait_for(T, "10 events centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 10
    });
    let ack = |seq: u64| {
        central.publish(
            &format!("portier/v1/{GW}/ack"),
            serde_cbor::to_vec(&Ack { seq, journal: None }).unwrap(),
            false,
        );
    };
    for seq in [u64::MAX, 11] {
        ack(seq);
        assert_eq!(
            alarm(&gw.rt, &mut uplink),
            EventKind::AckOutOfRange {
                acked: seq,
                sent: 10
            }
        );
        assert_eq!(gw.reader.len(), 10, "nothing deleted");
    }
    // The link still works: a true ack deletes, new events flow.
    ack(4);
    wait_for(T, "4 deleted", || gw.reader.len() == 6);
    append(&mut gw.writer, &uplink, 5);
    wait_for(T, "15 events centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 15
    });
    ack(15);
    wait_for(T, "all deleted", || gw.reader.is_empty());
    drop(gw);
}

#[test]
fn large_events_waiting_through_a_central_outage_all_arrive_in_bounded_batches() {
    let broker = Broker::start(&[GW]);
    let mut gw = Gateway::open();
    // 1 000 events as large as the caps let them be (hostile door ids and
    // actions of 1 MB each are capped at commit).
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    let kinds: Vec<EventKind> = (0..1000)
        .map(|i| EventKind::AdminAction {
            user: "u".repeat(1 << 20),
            client: "c".repeat(1 << 20),
            door: format!("door-{i}-{}", "d".repeat(1 << 20)),
            action: "a".repeat(1 << 20),
            result: "r\0".repeat(1 << 20),
        })
        .collect();
    let last = gw.writer.append(at, kinds).unwrap().last().unwrap().seq;
    assert_eq!(last, 1000);
    // Central is down: the uplink sends into the void, nothing is acked.
    let uplink = gw.uplink(&broker, |cfg| cfg.resend_after_seconds = 1);
    uplink.appended.send_replace(last);
    wait_for(T, "connected", || uplink.connected());
    assert_eq!(uplink.state.borrow().acked, 0);
    // Central comes: the resend from the last ack delivers every event,
    // in messages under the byte limit (default 256 KiB).
    let central = Central::start(&broker, true);
    wait_for(T, "every event stored", || {
        central.seen.lock().unwrap().contiguous(GW) == 1000
    });
    wait_for(T, "every event acknowledged and deleted", || {
        gw.reader.is_empty()
    });
    let seen = central.seen.lock().unwrap();
    assert!(seen.errors.is_empty(), "{:?}", seen.errors);
    assert!(
        seen.largest > 0 && seen.largest <= 256 << 10,
        "largest message {} bytes",
        seen.largest
    );
    let door = seen.events[GW][&1]["door"].as_str().unwrap().to_owned();
    assert!(
        door.starts_with("door-0-ddd") && door.len() <= 128,
        "{door}"
    );
}

#[test]
fn oversized_messages_are_refused_with_an_alarm() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let mut gw = Gateway::open();
    let mut uplink = gw.uplink(&broker, |cfg| cfg.max_delta_kib = 4);
    // Connected and subscribed: the retained status goes out after the
    // subscriptions on the same connection, so once central has it, a
    // message published now is delivered (not lost between CONNACK and
    // SUBACK of a first connection).
    wait_for(T, "gateway online", || {
        central
            .seen
            .lock()
            .unwrap()
            .status
            .get(GW)
            .is_some_and(|s| s.state == "online")
    });
    let prefix = format!("portier/v1/{GW}");
    central.publish(&format!("{prefix}/command"), vec![7; (64 << 10) + 1], false);
    assert_eq!(
        alarm(&gw.rt, &mut uplink),
        EventKind::UplinkMessageRefused {
            topic: format!("{prefix}/command"),
            bytes: (64 << 10) + 1,
            limit: 64 << 10,
        }
    );
    central.publish(&format!("{prefix}/delta"), vec![7; 5 << 10], false);
    assert_eq!(
        alarm(&gw.rt, &mut uplink),
        EventKind::UplinkMessageRefused {
            topic: format!("{prefix}/delta"),
            bytes: 5 << 10,
            limit: 4 << 10,
        }
    );
    // Within the limits: delivered. Nothing oversized came before them.
    central.publish(&format!("{prefix}/delta"), vec![1; 4 << 10], false);
    central.publish(&format!("{prefix}/command"), b"marker".to_vec(), false);
    let got: Vec<Inbound> = gw.rt.block_on(async {
        let mut got = Vec::new();
        while got.len() < 2 {
            got.push(
                tokio::time::timeout(T, uplink.inbound.recv())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        got
    });
    assert!(got.contains(&Inbound::Delta(vec![1; 4 << 10])), "{got:?}");
    assert!(got.contains(&Inbound::Command(b"marker".to_vec())));
}

#[test]
fn an_undecodable_record_is_skipped_with_its_seq_and_the_rest_flows() {
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let mut gw = Gateway::open();
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    // Three commits, one event each; then flip a byte inside the second
    // on disk (a bad sector): that event cannot be read, the others can.
    let mut ends = Vec::new();
    for i in 0..3 {
        gw.writer
            .append(
                at,
                vec![EventKind::DoorForced {
                    door: format!("d{i}").into(),
                }],
            )
            .unwrap();
        ends.push(segment_len(gw._dir.path()));
    }
    let segment = only_segment(gw._dir.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[((ends[0] + ends[1]) / 2) as usize] ^= 0x5a;
    std::fs::write(&segment, bytes).unwrap();
    let mut uplink = gw.uplink(&broker, |_| {});
    match alarm(&gw.rt, &mut uplink) {
        EventKind::JournalRecordSkipped { record: 2, .. } => {}
        other => panic!("{other:?}"),
    }
    wait_for(T, "3 events centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 3
    });
    let events = central.events(GW);
    assert_eq!(events[0]["type"], "door_forced");
    assert_eq!(events[1]["type"], "journal_record_skipped");
    assert_eq!(events[1]["seq"], 2);
    assert_eq!(events[1]["record"], 2);
    assert_eq!(events[2]["door"], "d2");
    wait_for(T, "all deleted on the ack", || gw.reader.is_empty());
    append(&mut gw.writer, &uplink, 2);
    wait_for(T, "5 events centrally", || {
        central.seen.lock().unwrap().contiguous(GW) == 5
    });
}

/// The child: an uplink whose inbound messages are never acknowledged
/// (they are "being applied" when it is killed). Prints `delivered` for
/// each.
fn child(journal_dir: &str, section: &str) -> ! {
    let rt = runtime();
    let journal_path = journal_dir.as_ref();
    let Journal { reader, acker, .. } = Journal::open(journal_path).unwrap();
    let cfg = toml::from_str(section.trim_start_matches("[uplink]\n")).unwrap();
    let mut uplink = spawn_uplink_with(&rt, (reader, acker), cfg, GW, true);
    rt.block_on(async {
        while let Some(d) = uplink.delivered.recv().await {
            if let Inbound::Delta(bytes) = &d.inbound {
                println!("delivered {}", String::from_utf8_lossy(bytes));
            }
            // Held, never `done`: the apply has not finished.
            std::mem::forget(d);
        }
    });
    unreachable!("the lanes never close while the uplink runs");
}

#[test]
fn a_delta_delivered_but_not_applied_before_a_crash_comes_again() {
    if let (Ok(dir), Ok(section)) = (
        std::env::var(CHILD_ENV),
        std::env::var("PORTIER_UPLINK_SECTION"),
    ) {
        child(&dir, &section);
    }
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("events");
    let mut gateway = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_delta_delivered_but_not_applied_before_a_crash_comes_again",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &journal_dir)
        .env("PORTIER_UPLINK_SECTION", broker.uplink_section(GW))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Central sees the gateway's retained status once it is connected and
    // subscribed (the status goes out after the subscriptions).
    wait_for(T, "gateway online", || {
        central
            .seen
            .lock()
            .unwrap()
            .status
            .get(GW)
            .is_some_and(|s| s.state == "online")
    });
    let prefix = format!("portier/v1/{GW}");
    central.publish(&format!("{prefix}/delta"), b"delta-1".to_vec(), false);
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let line = loop {
        let line = lines.next().expect("child output").unwrap();
        // The harness prints the test's name without a line end first.
        if let Some(at) = line.find("delivered ") {
            break line[at..].to_owned();
        }
    };
    assert_eq!(line, "delivered delta-1");
    // Delivered, not applied: SIGKILL.
    gateway.kill().unwrap();
    gateway.wait().unwrap();

    // The restarted gateway (same client id, persistent session) gets it.
    let journal_path = &journal_dir;
    let Journal { reader, acker, .. } = Journal::open(journal_path).unwrap();
    let rt = runtime();
    let mut uplink = spawn_uplink(&rt, (reader, acker), &broker, GW, |_| {});
    let got = rt.block_on(async { tokio::time::timeout(T, uplink.inbound.recv()).await });
    assert_eq!(
        got.expect("redelivered").unwrap(),
        Inbound::Delta(b"delta-1".to_vec())
    );
}
