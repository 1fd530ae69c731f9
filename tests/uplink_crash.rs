//! Kill -9 under load, 100 times: a child process appends events to the
//! journal (each batch flushed, then reported on stdout — "acknowledged to
//! the door") while its uplink ships them to a real Mosquitto over mTLS and
//! central acks them. It is SIGKILLed at a random point each round and
//! started again. At the end every reported event has arrived centrally,
//! each sequence number with the content it was appended with (none
//! reused), none lost.
#![allow(clippy::disallowed_methods)] // tests wait on real time

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portier::event::EventKind;
use portier::journal::Journal;
use support::broker::{Broker, Central};

const CHILD: &str = "PORTIER_UPLINK_CRASH_CHILD";
const GW: &str = "gw-a";
const ROUNDS: usize = 100;

/// The child: uplink + an append loop; prints the last seq of every
/// flushed batch. With `drain`, appends nothing.
fn child(journal_dir: &str, uplink: &str, drain: bool) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let journal_path = std::path::Path::new(journal_dir);
    let Journal {
        writer: mut journal,
        reader,
        acker,
        ..
    } = Journal::open(journal_path).unwrap();
    let uplink = spawn_uplink_section(&runtime, (reader, acker), uplink);
    let at = "2026-11-23T22:00:00Z".parse().unwrap();
    loop {
        if drain {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let first = journal.next_seq();
        let kinds = (first..first + 10)
            .map(|n| EventKind::DoorClosed {
                door: format!("d{n}").into(),
            })
            .collect();
        let done = journal.append(at, kinds).unwrap();
        let last = done.last().unwrap().seq;
        uplink.appended.send_replace(last);
        println!("{last}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The child has no `Broker` (it is another process): build the uplink
/// from the `[uplink]` section the parent passed on.
fn spawn_uplink_section(
    runtime: &tokio::runtime::Runtime,
    journal: support::broker::UplinkJournal,
    section: &str,
) -> support::broker::TestUplink {
    support::broker::spawn_uplink_with(
        runtime,
        journal,
        toml::from_str(section.trim_start_matches("[uplink]\n")).unwrap(),
        GW,
        false,
    )
}

fn spawn_child(journal_dir: &std::path::Path, uplink: &str, drain: bool) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_nine_under_load_loses_nothing",
            "--nocapture",
        ])
        .env(CHILD, journal_dir)
        .env("PORTIER_UPLINK_SECTION", uplink)
        .env("PORTIER_DRAIN", if drain { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_nine_under_load_loses_nothing() {
    if let Ok(dir) = std::env::var(CHILD) {
        let uplink = std::env::var("PORTIER_UPLINK_SECTION").unwrap();
        child(
            &dir,
            &uplink,
            std::env::var("PORTIER_DRAIN").as_deref() == Ok("1"),
        );
    }
    let broker = Broker::start(&[GW]);
    let central = Central::start(&broker, true);
    let dir = tempfile::tempdir().unwrap();
    let uplink = broker.uplink_section(GW);
    let mut reported = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..ROUNDS {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lines = 1 + rng % 30;
        let mut c = spawn_child(dir.path(), &uplink, false);
        let mut out = BufReader::new(c.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < lines {
            match out.next() {
                Some(Ok(line)) => {
                    if let Ok(seq) = line.trim().parse::<u64>() {
                        reported = reported.max(seq);
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        c.kill().unwrap();
        c.wait().unwrap();
    }
    assert!(
        reported >= ROUNDS as u64 * 10,
        "the children appended too little"
    );
    // One last run that only ships what is left.
    let mut c = spawn_child(dir.path(), &uplink, true);
    let end = Instant::now() + Duration::from_secs(120);
    while central.seen.lock().unwrap().contiguous(GW) < reported {
        assert!(
            Instant::now() < end,
            "central has everything up to {} of {reported}",
            central.seen.lock().unwrap().contiguous(GW)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill().unwrap();
    c.wait().unwrap();
    let seen = central.seen.lock().unwrap();
    for (seq, e) in &seen.events[GW] {
        assert_eq!(
            e["door"],
            format!("d{seq}"),
            "seq {seq} reused or garbled: {e}"
        );
    }
    println!(
        "{ROUNDS} kills: {reported} events reported to the door, all {} arrived ({} deliveries)",
        seen.events[GW].len(),
        seen.seqs[GW].len()
    );
}
