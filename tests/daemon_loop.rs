//! The daemon loop end to end in one process: a bus task over an in-memory
//! stream to Portier's PD core (Secure Channel), the building core, a
//! journal in sled, and a decider — card at the reader → decision → strike
//! OUT and LED at the PD, and the record on disk before the relay moves.

use std::time::Duration;

mod support;

use portier::door::{DenyReason, Direction, StandardConfig};
use portier::driver::daemon::{self, Daemon, DaemonInputs};
use portier::driver::serial::{BusStart, spawn_bus};
use portier::event::EventKind;
use portier::ids::DoorId;
use portier::journal::JournalReader;
use portier::osdp::message::{Command, LedColor, OutputAction, RawCard};
use portier::osdp::peripheral::{PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, KeyPolicy, PdConfig, Timing};
use portier::rules::CredentialKey;
use portier::site::Rules;
use portier::site::outputs::StrikeWiring;
use portier::site::{
    Building, DoorKind, DoorWiring, InputRef, OutputRef, PdRef, ReaderRef, Verdict,
};
use tokio::sync::{mpsc, watch};

/// A fixture decider: the staff card 42:1001 is granted, 42:1005 is
/// blocked. (The rules engine proper is tested on its own.)
struct Fixture;

impl Rules for Fixture {
    fn decide(
        &self,
        _door: &DoorId,
        key: &CredentialKey,
        _pin: Option<&str>,
        _now: jiff::Timestamp,
    ) -> Verdict {
        match key.to_string().as_str() {
            "h10301:42:1001" => Verdict::Grant {
                credential: key.clone(),
                extended: false,
                lockdown_exempt: false,
                name: None,
            },
            _ => Verdict::Deny {
                credential: Some(key.clone()),
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
    reader_journal: JournalReader,
    control: mpsc::Sender<daemon::Control>,
    _dir: tempfile::TempDir,
}

/// Our PD in SC behind the bus task, a side door on it, and the daemon
/// loop with `decider`.
fn start(decider: Box<dyn Rules>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    start_in(dir, decider, None)
}

/// As [`start`], with the events database in `dir` and, when given, a disk
/// reserve watched on its file system.
fn start_in(dir: tempfile::TempDir, decider: Box<dyn Rules>, reserve: Option<u64>) -> Running {
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
    let (bus_events_tx, tagged) = mpsc::channel(64);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let start = BusStart {
        name: "bus0".into(),
        events: bus_events_tx,
        shutdown: shutdown_rx.clone(),
        suppress_echo: false,
        capture: None,
    };
    let spawned = spawn_bus(cp_side, bus, start);

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
    let journal_dir = dir.path().join("journal");
    let links = vec![spawned.link];
    let (control_tx, control) = mpsc::channel(4);
    let (view, _) = watch::channel(daemon::DaemonView::default());
    let (mut d, reader_journal) = Daemon::open(&journal_dir, building, decider, links).unwrap();
    // Read the free space at every commit, so the test needs no waiting.
    d.disk = reserve.map(|r| {
        portier::driver::disk::DiskSpace::new(dir.path(), r).with_freshness(Duration::ZERO)
    });
    let daemon = tokio::spawn(daemon::run(
        d,
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
        control: control_tx,
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
        ..
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
    badge(&cards, 1005);
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
            |e| matches!(&e.kind, EventKind::AccessDenied { reason, .. } if *reason == DenyReason::Blocked)
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

impl Rules for ScheduledOpen {
    fn decide(
        &self,
        door: &DoorId,
        key: &CredentialKey,
        pin: Option<&str>,
        now: jiff::Timestamp,
    ) -> Verdict {
        Fixture.decide(door, key, pin, now)
    }

    fn door_mode(&self, door: &DoorId, _now: jiff::Timestamp) -> Option<String> {
        (*door == "side-entrance").then(|| "unlocked".to_owned())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_scheduled_unlock_holds_the_strike_released_and_is_journaled() {
    // `_dir` held: the journal creates files in it as it goes.
    let Running {
        mut pd_events,
        shutdown,
        daemon,
        reader_journal,
        control,
        _dir,
        ..
    } = start(Box::new(ScheduledOpen));
    let within = Duration::from_secs(5);
    // No signed time yet: the release waits, and says why.
    wait_for_record(&reader_journal, "the withheld release", |k| {
        matches!(k, EventKind::DoorModeWithheld { door, reason, .. } if door == "side-entrance" && *reason == portier::event::Withheld::TimeUnconfirmed)
    })
    .await;
    // Central's time beacon confirms the time.
    control
        .send(daemon::Control::Beacon {
            at: daemon::wall_now(),
            came: portier::clock::monotonic(),
        })
        .await
        .unwrap();
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

/// A small tmpfs as the state directory (needs root, as in CI; elsewhere
/// the test says so and checks nothing).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Present H10301 card 42:`number` at the reader.
fn badge(cards: &mpsc::UnboundedSender<RawCard>, number: u64) {
    let (data, bits) = portier::rules::wiegand::encode(&CredentialKey::H10301 {
        facility: 42,
        number,
    })
    .unwrap();
    cards
        .send(RawCard {
            reader: 0,
            format: 0,
            bits,
            data,
        })
        .unwrap();
}

async fn wait_for_record(
    journal: &JournalReader,
    what: &str,
    pred: impl Fn(&EventKind) -> bool,
) -> Vec<EventKind> {
    let deadline = portier::clock::timer() + Duration::from_secs(10);
    loop {
        let records: Vec<EventKind> = journal
            .after(0, 10_000)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        if records.iter().any(&pred) {
            return records;
        }
        assert!(
            portier::clock::timer() < deadline,
            "no {what} within 10 s: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_keeps_the_doors_deciding_and_the_alarms() {
    let Some(fs) = Tmpfs::mount(96) else {
        eprintln!("not root: cannot mount a tmpfs; the disk-full test needs it (CI runs it)");
        return;
    };
    let root = fs.0.path().to_owned();
    let state = tempfile::Builder::new().tempdir_in(&root).unwrap();
    let reserve = 40 << 20;
    let Running {
        mut pd_events,
        cards,
        shutdown,
        daemon,
        reader_journal,
        _dir,
        ..
    } = start_in(state, Box::new(Fixture), Some(reserve));
    let within = Duration::from_secs(5);
    next_command(&mut pd_events, within)
        .await
        .expect("lock on online");

    // Fill the disk to below the reserve (not to the last byte: sled must
    // never meet a full disk).
    let free = portier::driver::disk::available_bytes(&root).unwrap();
    let filler = root.join("filler");
    std::fs::write(&filler, vec![0u8; (free - (20 << 20)) as usize]).unwrap();
    assert!(portier::driver::disk::available_bytes(&root).unwrap() < reserve);

    // The staff card still opens the door; its grant is not journaled.
    badge(&cards, 1001);
    loop {
        let c = next_command(&mut pd_events, within)
            .await
            .expect("grant on a full disk");
        if matches!(&c, Command::Output(r) if r[0].action == OutputAction::TimedOn) {
            break;
        }
    }
    // A lost pass is an alarm: kept, in the reserve.
    badge(&cards, 1005);
    let records = wait_for_record(
        &reader_journal,
        "denied record",
        |k| matches!(k, EventKind::AccessDenied { reason, .. } if *reason == DenyReason::Blocked),
    )
    .await;
    assert!(
        records
            .iter()
            .any(|k| matches!(k, EventKind::DiskFull { .. })),
        "{records:?}"
    );
    assert!(
        !records
            .iter()
            .any(|k| matches!(k, EventKind::AccessGranted { .. })),
        "a routine event was written into the reserve: {records:?}"
    );

    // Space back: the count of what was dropped, and grants journaled again.
    std::fs::remove_file(&filler).unwrap();
    badge(&cards, 1001);
    let records = wait_for_record(&reader_journal, "grant after recovery", |k| {
        matches!(k, EventKind::AccessGranted { .. })
    })
    .await;
    assert!(
        records
            .iter()
            .any(|k| matches!(k, EventKind::DiskSpaceRecovered { dropped } if *dropped >= 1)),
        "{records:?}"
    );
    shutdown.send(true).unwrap();
    daemon.await.unwrap().unwrap();
    drop(_dir);
    drop(fs);
}
