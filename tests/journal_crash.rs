//! Crash test for the event journal: a child process commits events (with
//! a state naming the commit's last event, as the daemon commits its
//! standing state) into small segments and reports each batch once
//! `commit` has returned (flushed); the parent kills it with SIGKILL at a
//! random moment, reopens the journal and checks that every reported event
//! is there, in order, with no gap and no reuse, and that the state is the
//! one committed with the last surviving event — never ahead, never behind.
#![allow(clippy::disallowed_methods)] // real time: random kill delays

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portier::event::EventKind;
use portier::journal::Journal;

const CHILD_ENV: &str = "PORTIER_JOURNAL_CRASH_CHILD";

fn child(path: &str) -> ! {
    let journal_path = path.as_ref();
    // Small segments: kills land in roll-overs too.
    let mut journal = Journal::open(journal_path)
        .unwrap()
        .writer
        .with_segment_bytes(16 << 10);
    let at = "2026-11-23T20:00:00Z".parse().unwrap();
    loop {
        let batch = (0..10)
            .map(|i| EventKind::DoorForced {
                door: format!("door-{i}").into(),
            })
            .collect();
        let next = journal.next_seq() + 9;
        let events = journal
            .commit(at, batch, Some(next.to_string().into_bytes()))
            .unwrap();
        assert_eq!(events.last().unwrap().seq, next);
        // Only now is the batch "acknowledged to the door".
        println!("{}", events.last().unwrap().seq);
    }
}

#[test]
fn killed_writer_loses_no_acknowledged_event() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut highest_seen = 0u64;
    for round in 0..30 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "killed_writer_loses_no_acknowledged_event",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(20 + seed % 200);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acked = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(seq) = line.trim().parse::<u64>() {
                    acked = seq;
                }
            }
            acked
        });
        let started = Instant::now();
        while started.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();

        let journal_path = &path;
        let journal = Journal::open(journal_path).unwrap();
        let reader = &journal.reader;
        // Reads are bounded in bytes: page through everything.
        let mut events = Vec::new();
        loop {
            let after = events.last().map_or(0, |e: &portier::event::Event| e.seq);
            let page = reader.after(after, usize::MAX).unwrap();
            if page.is_empty() {
                break;
            }
            events.extend(page);
        }
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "round {round}: gap or disorder"
        );
        let last = seqs.last().copied().unwrap_or(0);
        assert!(
            last >= acked,
            "round {round}: acknowledged {acked} but only {last} survived"
        );
        assert!(
            last >= highest_seen,
            "round {round}: events vanished ({last} < {highest_seen})"
        );
        assert!(
            journal.writer.next_seq() > last,
            "round {round}: sequence would be reused"
        );
        if last > 0 {
            let state = String::from_utf8(journal.state.clone().unwrap()).unwrap();
            assert_eq!(
                state,
                last.to_string(),
                "round {round}: state and events apart"
            );
        }
        highest_seen = last;
    }
    assert!(highest_seen > 0, "the child never got to append");
}
