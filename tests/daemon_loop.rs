//! The daemon loop end to end in one process: a bus task over an in-memory
//! stream to Portier's PD core (Secure Channel), the building core, a
//! journal in sled, and a decider — card at the reader → decision → strike
//! OUT and LED at the PD, and the record on disk before the relay moves.

use std::time::Duration;

mod support;

use portier::door::{DenyReason, Direction, StandardConfig};
use portier::driver::daemon::{self, BusLink, Daemon, DaemonInputs, Decider};
use portier::driver::serial::{BusHandles, run_bus};
use portier::journal::{EventKind, Journal};
use portier::osdp::message::{Command, LedColor, OutputAction, RawCard};
use portier::osdp::peripheral::{PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, KeyPolicy, PdConfig, Timing};
use portier::site::outputs::StrikeWiring;
use portier::site::{
    Building, DoorKind, DoorWiring, InputRef, OutputRef, PdRef, ReaderRef, Verdict,
};
use tokio::sync::{mpsc, watch};

/// A fixture decider: the staff card 42:1001 is granted, 42:1005 is
/// blocked. (The rules engine proper is tested on its own.)
struct Fixture;

impl Decider for Fixture {
    fn decide(&mut self, _door: &str, card: &RawCard, _now: jiff::Timestamp) -> Verdict {
        match hex::encode(&card.data).as_str() {
            "9501f480" => Verdict::Grant {
                credential: "h10301:42:1001".into(),
                extended: false,
                lockdown_exempt: false,
            },
            _ => Verdict::Deny {
                credential: Some("h10301:42:1005".into()),
                reason: DenyReason::Blocked,
            },
        }
    }
}

fn pd_ref() -> PdRef {
    PdRef {
        bus: "bus0".into(),
        address: 1,
    }
}

struct Running {
    pd_events: mpsc::UnboundedReceiver<PeripheralEvent>,
    cards: mpsc::UnboundedSender<RawCard>,
    shutdown: watch::Sender<bool>,
    daemon: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    reader_journal: portier::journal::JournalReader,
    _dir: tempfile::TempDir,
}

/// Our PD in SC behind the bus task, a side door on it, and the daemon
/// loop with `decider`.
fn start(decider: Box<dyn Decider>) -> Running {
    let key = Scbk([0x77; 16]);
    let (cp_side, pd_events, cards) =
        support::memory_pd(PeripheralConfig::simulator(1, Some(key.clone())), false);

    // The bus task, its events tagged with the bus name for the daemon.
    let bus = Bus::new(
        Timing::default(),
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Secure(key),
        }],
        Box::new(portier::driver::clock::os_entropy),
    )
    .unwrap();
    let (bus_events_tx, mut bus_events) = mpsc::channel(64);
    let (requests, requests_rx) = mpsc::channel(16);
    let (status, _) = watch::channel(Vec::new());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let handles = BusHandles {
        requests: requests_rx,
        events: bus_events_tx,
        status,
        shutdown: shutdown_rx.clone(),
    };
    tokio::spawn(run_bus(cp_side, bus, handles, false, None));
    let (tagged_tx, tagged) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(e) = bus_events.recv().await {
            if tagged_tx.send(("bus0".to_owned(), e)).await.is_err() {
                return;
            }
        }
    });

    let building = Building::new(vec![DoorWiring {
        id: "side-entrance".into(),
        kind: DoorKind::Standard(StandardConfig::default()),
        readers: vec![ReaderRef {
            id: "side-in".into(),
            pd: pd_ref(),
            reader: 0,
            direction: Direction::In,
        }],
        lock: Some(OutputRef {
            pd: pd_ref(),
            wiring: StrikeWiring {
                output: 1,
                energize_to_unlock: true,
            },
        }),
        release_out: None,
        contact: Some(InputRef {
            pd: pd_ref(),
            input: 0,
            active_high: true,
        }),
        exit_button: None,
        rotation_in: None,
        rotation_out: None,
    }]);
    let dir = tempfile::tempdir().unwrap();
    let db = portier::storage::open_db(dir.path(), 8 << 20).unwrap();
    let Journal {
        writer: journal,
        reader: reader_journal,
        ..
    } = Journal::open(&db).unwrap();
    let links = vec![BusLink {
        name: "bus0".into(),
        requests,
    }];
    let presence = daemon::PresenceBook::open(&db).unwrap();
    let (_control, control) = mpsc::channel(4);
    let (view, _) = watch::channel(daemon::DaemonView::default());
    let daemon = tokio::spawn(daemon::run(
        Daemon::new(building, decider, journal, presence, links),
        DaemonInputs {
            events: tagged,
            control,
            shutdown: shutdown_rx,
        },
        view,
    ));

    Running {
        pd_events,
        cards,
        shutdown,
        daemon,
        reader_journal,
        _dir: dir,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn card_to_relay_with_the_record_on_disk_first() {
    let Running {
        mut pd_events,
        cards,
        shutdown,
        daemon,
        reader_journal,
        _dir,
    } = start(Box::new(Fixture));
    let within = Duration::from_secs(5);
    // Coming online, the strike output is locked first.
    let first = next_command(&mut pd_events, within)
        .await
        .expect("lock on online");
    assert!(
        matches!(&first, Command::Output(r) if r[0].output == 1 && r[0].action == OutputAction::PermanentOffAbortTimed),
        "{first:?}"
    );

    // Staff card: strike released for 5 s, green LED, record on disk.
    cards
        .send(RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: vec![0x95, 0x01, 0xf4, 0x80],
        })
        .unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|c| matches!(c, Command::Output(_)))
        || !seen.iter().any(|c| matches!(c, Command::Led(_)))
    {
        seen.push(
            next_command(&mut pd_events, within)
                .await
                .expect("grant commands"),
        );
    }
    let out = seen
        .iter()
        .find_map(|c| match c {
            Command::Output(r) => Some(r[0]),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (out.output, out.action, out.timer_100ms),
        (1, OutputAction::TimedOn, 50)
    );
    let led = seen
        .iter()
        .find_map(|c| match c {
            Command::Led(l) => Some(l[0]),
            _ => None,
        })
        .unwrap();
    assert_eq!(led.temporary.on_color, LedColor::Green);
    let records = reader_journal.after(0, 100).unwrap();
    assert!(records.iter().any(|e| matches!(&e.kind, EventKind::AccessGranted { credential, .. } if credential == "h10301:42:1001")), "{records:?}");

    // Lost pass: red LED, no OUT, denied with reason.
    cards
        .send(RawCard {
            reader: 0,
            format: 0,
            bits: 26,
            data: vec![0x95, 0x01, 0xf6, 0x80],
        })
        .unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|c| matches!(c, Command::Led(_))) {
        seen.push(
            next_command(&mut pd_events, within)
                .await
                .expect("deny feedback"),
        );
    }
    assert!(
        !seen.iter().any(|c| matches!(c, Command::Output(_))),
        "{seen:?}"
    );
    let led = seen
        .iter()
        .find_map(|c| match c {
            Command::Led(l) => Some(l[0]),
            _ => None,
        })
        .unwrap();
    assert_eq!(led.temporary.on_color, LedColor::Red);
    let records = reader_journal.after(0, 100).unwrap();
    assert!(
        records.iter().any(
            |e| matches!(&e.kind, EventKind::AccessDenied { reason, .. } if reason == "blocked")
        )
    );

    stop(shutdown, daemon).await;
}

/// Shut the daemon loop down; it must stop cleanly and soon.
async fn stop(
    shutdown: watch::Sender<bool>,
    daemon: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
) {
    shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("daemon stops")
        .unwrap()
        .unwrap();
}

async fn next_command(
    rx: &mut mpsc::UnboundedReceiver<PeripheralEvent>,
    within: Duration,
) -> Result<Command, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            match rx.recv().await {
                Some(PeripheralEvent::Command(c)) => return c,
                Some(_) => continue,
                None => panic!("PD gone"),
            }
        }
    })
    .await
}

/// The rules schedule the side door unlocked (e.g. office hours).
struct ScheduledOpen;

impl Decider for ScheduledOpen {
    fn decide(&mut self, door: &str, card: &RawCard, now: jiff::Timestamp) -> Verdict {
        Fixture.decide(door, card, now)
    }

    fn door_mode(&self, door: &str, _now: jiff::Timestamp) -> Option<String> {
        (door == "side-entrance").then(|| "unlocked".to_owned())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_scheduled_unlock_holds_the_strike_released_and_is_journaled() {
    let Running {
        mut pd_events,
        shutdown,
        daemon,
        reader_journal,
        ..
    } = start(Box::new(ScheduledOpen));
    let within = Duration::from_secs(5);
    // Locked first when the PD comes online, then released by the schedule
    // (an open-ended release: the mode holds it, not a timer).
    loop {
        let c = next_command(&mut pd_events, within)
            .await
            .expect("scheduled release");
        if let Command::Output(r) = &c
            && r[0].action == OutputAction::PermanentOnAbortTimed
        {
            assert_eq!(r[0].output, 1);
            break;
        }
    }
    let records = reader_journal.after(0, 100).unwrap();
    assert!(
        records.iter().any(|e| matches!(&e.kind, EventKind::DoorModeChanged { door, mode } if door == "side-entrance" && mode == "unlocked")),
        "{records:?}"
    );
    stop(shutdown, daemon).await;
}
