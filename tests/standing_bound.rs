//! The standing state stays small whatever passes the doors: 100 000
//! distinct cards through an entry-only door, through the real daemon loop
//! and journal. Each passage's commit costs its presence line (the list is
//! written whole only when the lines kept since outgrow it), the list is
//! capped, and a restart restores exactly the list in force.

#![allow(clippy::disallowed_methods)] // tests wait on real time

use std::time::Duration;

use portier::door::{Direction, MAX_INSIDE, StandardConfig};
use portier::driver::daemon::{self, BusLink, Daemon, DaemonInputs, StandingBook};
use portier::ids::DoorId;
use portier::journal::Journal;
use portier::osdp::BusEvent;
use portier::osdp::message::RawCard;
use portier::rules::CredentialKey;
use portier::site::outputs::StrikeWiring;
use portier::site::{
    Building, DoorKind, DoorWiring, InputRef, OutputRef, PdRef, ReaderRef, Rules, Verdict,
};
use tokio::sync::{mpsc, watch};

const CARDS: u32 = 100_000;
/// Passages between two measurements.
const STEP: u32 = 10_000;

/// Every card is granted, as itself.
struct Everyone;

impl Rules for Everyone {
    fn decide(
        &self,
        _door: &DoorId,
        key: &CredentialKey,
        _pin: Option<&str>,
        _now: jiff::Timestamp,
    ) -> Verdict {
        Verdict::Grant {
            credential: key.clone(),
            extended: false,
            lockdown_exempt: false,
            name: None,
        }
    }

    fn office_hours(&self, _at: jiff::Timestamp) -> Option<bool> {
        Some(true)
    }
}

fn pd() -> PdRef {
    PdRef {
        bus: "bus0".into(),
        address: 1,
    }
}

/// An entry-only door: one in-reader, a strike and a contact.
fn building() -> Building {
    Building::new(vec![DoorWiring {
        id: "entrance".into(),
        kind: DoorKind::Standard(StandardConfig::default()),
        readers: vec![ReaderRef {
            id: "entrance-in".into(),
            pd: pd(),
            reader: 0,
            direction: Direction::In,
        }],
        lock: Some(OutputRef {
            pd: pd(),
            wiring: StrikeWiring {
                output: 0,
                energize_to_unlock: true,
            },
        }),
        release_out: None,
        contact: Some(InputRef {
            pd: pd(),
            input: 0,
            active_high: true,
        }),
        exit_button: None,
        rotation_in: None,
        rotation_out: None,
    }])
}

fn journal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

// A hundred thousand passages take minutes unoptimised: `scripts/test`
// runs this in release, with the simulation.
#[cfg_attr(debug_assertions, ignore = "release only (scripts/test)")]
#[tokio::test(flavor = "current_thread")]
async fn a_hundred_thousand_cards_through_an_entry_door_keep_the_state_bounded() {
    // On tmpfs where there is one: a hundred thousand flushes of a real
    // disk would make this a benchmark.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let (requests, mut commands) = mpsc::channel(1024);
    let link = BusLink {
        name: "bus0".into(),
        requests,
    };
    tokio::spawn(async move { while commands.recv().await.is_some() {} });
    let (daemon, reader) =
        Daemon::open(dir.path(), building(), Box::new(Everyone), vec![link]).unwrap();
    let (events, events_rx) = mpsc::channel(64);
    let (_control, control) = mpsc::channel(1);
    let (stop, shutdown) = watch::channel(false);
    let (view, _view) = watch::channel(Default::default());
    let task = tokio::spawn(daemon::run(
        daemon,
        DaemonInputs {
            events: events_rx,
            control,
            shutdown,
        },
        view,
    ));
    let mut bytes_at = Vec::new();
    for n in 0..CARDS {
        let send = |event| events.send(("bus0".into(), event));
        send(BusEvent::Card {
            address: 1,
            card: RawCard {
                reader: 0,
                format: 0,
                bits: 32,
                data: n.to_be_bytes().to_vec(),
            },
        })
        .await
        .unwrap();
        // Through the door: the contact opens and closes.
        for level in [1, 0] {
            send(BusEvent::Inputs {
                address: 1,
                inputs: vec![level, 0, 0, 0],
            })
            .await
            .unwrap();
        }
        if n % STEP == STEP - 1 {
            // Let the loop catch up before measuring: two events a
            // passage (granted, door closed), after the start's few.
            let until = u64::from(n + 1) * 2;
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while reader.next_seq() < until {
                assert!(std::time::Instant::now() < deadline, "the loop stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            bytes_at.push(journal_bytes(dir.path()));
        }
    }
    stop.send_replace(true);
    task.await.unwrap().unwrap();
    // The reader shares the journal's lock: let it go before reopening.
    drop(reader);

    // Bytes per passage (grant, door opened, closed, and the state) over
    // the last 50 000 as over the first 10 000: the list's length adds
    // nothing to a passage.
    let step = f64::from(STEP);
    let first = bytes_at[0] as f64 / step;
    let last = (bytes_at[9] - bytes_at[4]) as f64 / (5.0 * step);
    println!("journal bytes per passage: first 10 000 {first:.0}, last 50 000 {last:.0}");
    assert!(last < 1024.0, "{last} bytes per passage with a long list");
    assert!(
        last < first * 2.0,
        "{last} vs {first}: a passage grows with the list"
    );

    // A restart restores the list in force: the cap's newest entries.
    let j = Journal::open(dir.path()).unwrap();
    let whole = j.state.as_ref().map_or(0, Vec::len);
    let changes: usize = j.state_changes.iter().map(Vec::len).sum();
    println!("standing state: whole {whole} bytes, changes since {changes} bytes");
    assert!(whole < 2 << 20, "{whole}");
    assert!(
        changes <= whole.max(64 << 10) + 4096,
        "{changes} vs {whole}"
    );
    let restored = StandingBook::load(j.state.as_deref(), &j.state_changes, None).unwrap();
    assert_eq!(restored.presence.count(), MAX_INSIDE);
    let newest = format!("raw:{}/32", hex::encode((CARDS - 1).to_be_bytes()));
    let evicted = format!(
        "raw:{}/32",
        hex::encode((CARDS - MAX_INSIDE as u32 - 1).to_be_bytes())
    );
    assert!(restored.presence.get(&newest.as_str().into()).is_some());
    assert!(restored.presence.get(&evicted.as_str().into()).is_none());
}
