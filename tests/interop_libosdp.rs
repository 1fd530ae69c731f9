//! Interoperability with libosdp (PyPI `libosdp`, an implementation nobody
//! here wrote) over real pseudo-terminals:
//! - our control panel (the `Bus` behind the serial driver) against libosdp
//!   PDs: plaintext, Secure Channel, install mode, wrong key, two PDs on one
//!   bus, a PD without Secure Channel;
//! - our PD simulator (`portier reader simulate`) against a libosdp CP.
//!
//! The harness scripts and their JSON-line protocol: tests/interop/README.md.

mod support;

use std::path::Path;
use std::time::Duration;

use portier::driver::clock;
use portier::driver::serial::{
    BusRequest, BusStart, PortSettings, Rs485Mode, open_port, spawn_bus,
};
use portier::osdp::message::{
    BuzzerControl, Command, LedColor, LedControl, LedPermanent, LedTemporary, OutputAction,
    OutputControl,
};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, BusEvent, KeyPolicy, PdConfig, SecurityAlarm, Timing};
use serde_json::{Value, json};
use support::{JsonChild, PtyPair, key_file, portier_bin, python, repo};
use tokio::sync::{mpsc, oneshot, watch};

const KEY_1: &str = "A1B2C3D4E5F60718293A4B5C6D7E8F90";
const KEY_2: &str = "0F1E2D3C4B5A69788796A5B4C3D2E1F0";
const T: Duration = Duration::from_secs(10);

fn scbk(hex_digits: &str) -> Scbk {
    Scbk(hex::decode(hex_digits).unwrap().try_into().unwrap())
}

fn libosdp(script: &str, device: &Path, pds: &[&str]) -> JsonChild {
    let script = repo().join("tests/interop").join(script);
    let mut args = vec![
        script.to_str().unwrap().to_owned(),
        "--device".into(),
        device.to_str().unwrap().into(),
        "--baud".into(),
        "115200".into(),
    ];
    for pd in pds {
        args.push("--pd".into());
        args.push((*pd).into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = JsonChild::spawn(&python(), &args);
    child.expect(T, "libosdp ready", |v| v["event"] == "ready");
    child
}

/// Our CP: the bus core behind the serial driver, on its own runtime.
struct OurCp {
    runtime: tokio::runtime::Runtime,
    events: mpsc::Receiver<(portier::ids::BusId, BusEvent)>,
    requests: mpsc::Sender<BusRequest>,
    _shutdown: watch::Sender<bool>,
    seen: Vec<BusEvent>,
}

impl OurCp {
    fn start(device: &Path, pds: Vec<PdConfig>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let settings = PortSettings {
            path: device.to_owned(),
            baud: 115_200,
            rs485: Rs485Mode::Adapter,
            suppress_echo: false,
        };
        let (events_tx, events) = mpsc::channel(256);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let requests = runtime.block_on(async {
            let port = open_port(&settings).unwrap();
            let timing = Timing {
                poll_interval: Duration::from_millis(20),
                ..Timing::default()
            };
            let bus = Bus::new(timing, pds, Box::new(clock::os_entropy)).unwrap();
            let start = BusStart {
                name: "bus0".into(),
                events: events_tx,
                shutdown: shutdown_rx,
                suppress_echo: false,
                capture: None,
            };
            spawn_bus(port, bus, start).link.requests
        });
        Self {
            runtime,
            events,
            requests,
            _shutdown: shutdown,
            seen: Vec::new(),
        }
    }

    fn expect(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&BusEvent) -> bool,
    ) -> BusEvent {
        if let Some(e) = self.seen.iter().find(|e| pred(e)) {
            return e.clone();
        }
        let events = &mut self.events;
        let seen = &mut self.seen;
        self.runtime.block_on(async {
            let deadline = portier::clock::timer() + limit;
            loop {
                match tokio::time::timeout_at(deadline, events.recv()).await {
                    Ok(Some((_, e))) => {
                        seen.push(e.clone());
                        if pred(&e) {
                            return e;
                        }
                    }
                    _ => panic!("timed out after {limit:?} waiting for {what}; saw {seen:?}"),
                }
            }
        })
    }

    fn send(&self, address: u8, command: Command) {
        self.runtime.block_on(async {
            let (queued, result) = oneshot::channel();
            self.requests
                .send(BusRequest::Command {
                    address,
                    command,
                    queued: Some(queued),
                })
                .await
                .unwrap();
            result.await.unwrap().unwrap();
        });
    }

    fn online(&mut self, address: u8, secure: bool) {
        self.expect(T, &format!("PD {address} online (secure: {secure})"), |e| {
            matches!(e, BusEvent::Online { address: a, secure: s, .. } if *a == address && *s == secure)
        });
    }
}

fn led(color: LedColor) -> Command {
    Command::Led(vec![LedControl {
        reader: 0,
        led: 0,
        temporary: LedTemporary {
            control: 2,
            on_100ms: 5,
            off_100ms: 5,
            on_color: color,
            off_color: LedColor::Off,
            timer_100ms: 20,
        },
        permanent: LedPermanent {
            control: 1,
            on_100ms: 10,
            off_100ms: 0,
            on_color: LedColor::Red,
            off_color: LedColor::Off,
        },
    }])
}

fn card_reaches_our_cp(pd: &mut JsonChild, cp: &mut OurCp, address: u8) {
    pd.send(json!({"op": "card", "address": address, "data": "9501f480", "bits": 26}));
    let BusEvent::Card { card, .. } = cp.expect(
        T,
        "card",
        |e| matches!(e, BusEvent::Card { address: a, .. } if *a == address),
    ) else {
        unreachable!()
    };
    assert_eq!(
        (card.bits, hex::encode(&card.data)),
        (26, "9501f480".to_owned())
    );
}

fn commands_reach_libosdp_pd(pd: &mut JsonChild, cp: &OurCp, address: u8) {
    cp.send(address, led(LedColor::Green));
    cp.send(
        address,
        Command::Buzzer(BuzzerControl {
            reader: 0,
            tone: 2,
            on_100ms: 3,
            off_100ms: 1,
            count: 2,
        }),
    );
    cp.send(
        address,
        Command::Output(vec![OutputControl {
            output: 1,
            action: OutputAction::TimedOn,
            timer_100ms: 50,
        }]),
    );
    let led = pd.expect(T, "LED at PD", |v| {
        v["event"] == "led" && v["address"] == address
    });
    // libosdp reports colours as numbers: 2 = green.
    assert_eq!(led["on_color"], 2, "{led}");
    let buz = pd.expect(T, "buzzer at PD", |v| {
        v["event"] == "buzzer" && v["address"] == address
    });
    assert_eq!(buz["rep_count"], 2, "{buz}");
    let out = pd.expect(T, "output at PD", |v| {
        v["event"] == "output" && v["address"] == address
    });
    assert_eq!(
        (
            out["output"].clone(),
            out["control_code"].clone(),
            out["timer"].clone()
        ),
        (json!(1), json!(5), json!(50)),
        "{out}"
    );
}

#[test]
fn our_cp_with_a_plaintext_libosdp_pd() {
    let pty = PtyPair::new();
    let mut pd = libosdp("libosdp_pd.py", &pty.b, &["1"]);
    let mut cp = OurCp::start(
        &pty.a,
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Plaintext,
        }],
    );
    cp.online(1, false);
    card_reaches_our_cp(&mut pd, &mut cp, 1);
    commands_reach_libosdp_pd(&mut pd, &cp, 1);
}

#[test]
fn our_cp_with_a_libosdp_pd_in_secure_channel() {
    let pty = PtyPair::new();
    let mut pd = libosdp("libosdp_pd.py", &pty.b, &[&format!("1,scbk={KEY_1}")]);
    let mut cp = OurCp::start(
        &pty.a,
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Secure(scbk(KEY_1)),
        }],
    );
    cp.online(1, true);
    pd.expect(T, "PD reports SC", |v| {
        v["event"] == "status" && v["secure"] == true
    });
    card_reaches_our_cp(&mut pd, &mut cp, 1);
    commands_reach_libosdp_pd(&mut pd, &cp, 1);
    pd.send(json!({"op": "input", "address": 1, "input": 2, "active": true}));
    let BusEvent::Inputs { inputs, .. } =
        cp.expect(T, "inputs", |e| matches!(e, BusEvent::Inputs { .. }))
    else {
        unreachable!()
    };
    assert_eq!(inputs.get(2), Some(&1));
    assert!(
        cp.seen
            .iter()
            .all(|e| !matches!(e, BusEvent::Online { secure: false, .. }))
    );
}

#[test]
fn our_cp_installs_a_key_on_a_libosdp_pd_in_install_mode() {
    let pty = PtyPair::new();
    let mut pd = libosdp("libosdp_pd.py", &pty.b, &["1,install"]);
    let mut cp = OurCp::start(
        &pty.a,
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Install(scbk(KEY_2)),
        }],
    );
    cp.expect(T, "key installed", |e| {
        matches!(e, BusEvent::KeyInstalled { address: 1 })
    });
    cp.online(1, true);
    let keyset = pd.expect(T, "KEYSET at PD", |v| v["event"] == "keyset");
    assert_eq!(keyset["scbk"].as_str().unwrap().to_uppercase(), KEY_2);
    card_reaches_our_cp(&mut pd, &mut cp, 1);
}

#[test]
fn our_cp_keeps_a_libosdp_pd_with_another_key_offline() {
    let pty = PtyPair::new();
    let mut pd = libosdp("libosdp_pd.py", &pty.b, &[&format!("1,scbk={KEY_1}")]);
    let mut cp = OurCp::start(
        &pty.a,
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Secure(scbk(KEY_2)),
        }],
    );
    cp.expect(T, "wrong-key alarm", |e| {
        matches!(
            e,
            BusEvent::SecurityAlarm {
                alarm: SecurityAlarm::WrongKey,
                ..
            }
        )
    });
    pd.send(json!({"op": "card", "address": 1, "data": "9501f480", "bits": 26}));
    // Give it two more probe rounds: still never online, and no card.
    cp.expect(Duration::from_secs(5), "second alarm", |e| {
        matches!(e, BusEvent::SecurityAlarm { .. })
    });
    let again = cp
        .seen
        .iter()
        .filter(|e| matches!(e, BusEvent::SecurityAlarm { .. }))
        .count();
    assert!(again >= 1);
    assert!(
        cp.seen
            .iter()
            .all(|e| !matches!(e, BusEvent::Online { .. } | BusEvent::Card { .. })),
        "{:?}",
        cp.seen
    );
}

#[test]
fn our_cp_refuses_a_libosdp_pd_without_secure_channel_when_keyed() {
    let pty = PtyPair::new();
    // A libosdp PD with no key only speaks SC on SCBK-D (install mode):
    // a keyed CP must not take that as success.
    let mut _pd = libosdp("libosdp_pd.py", &pty.b, &["1"]);
    let mut cp = OurCp::start(
        &pty.a,
        vec![PdConfig {
            address: 1,
            key: KeyPolicy::Secure(scbk(KEY_1)),
        }],
    );
    cp.expect(T, "security alarm", |e| {
        matches!(e, BusEvent::SecurityAlarm { .. })
    });
    assert!(
        cp.seen
            .iter()
            .all(|e| !matches!(e, BusEvent::Online { .. }))
    );
}

#[test]
fn our_cp_with_two_libosdp_pds_on_one_bus() {
    let pty = PtyPair::new();
    let mut pds = libosdp(
        "libosdp_pd.py",
        &pty.b,
        &[&format!("1,scbk={KEY_1}"), &format!("2,scbk={KEY_2}")],
    );
    let mut cp = OurCp::start(
        &pty.a,
        vec![
            PdConfig {
                address: 1,
                key: KeyPolicy::Secure(scbk(KEY_1)),
            },
            PdConfig {
                address: 2,
                key: KeyPolicy::Secure(scbk(KEY_2)),
            },
        ],
    );
    cp.online(1, true);
    cp.online(2, true);
    card_reaches_our_cp(&mut pds, &mut cp, 2);
    card_reaches_our_cp(&mut pds, &mut cp, 1);
    cp.send(2, led(LedColor::Green));
    pds.expect(T, "LED at PD 2", |v| {
        v["event"] == "led" && v["address"] == 2
    });
}

fn our_pd(pty: &PtyPair, extra: &[&str]) -> JsonChild {
    let mut args = vec![
        "reader",
        "simulate",
        "--port",
        pty.b.to_str().unwrap(),
        "--address",
        "1",
        "--baud",
        "115200",
    ];
    args.extend_from_slice(extra);
    let mut pd = JsonChild::spawn(&portier_bin(), &args);
    pd.expect(T, "simulator ready", |v| v["event"] == "ready");
    pd
}

fn libosdp_cp_sees_our_card(cp: &mut JsonChild, pd: &mut JsonChild) {
    pd.send(json!({"op": "card", "data": "9501f480", "bits": 26}));
    let card = cp.expect(T, "card at libosdp CP", |v| v["event"] == "card");
    assert_eq!(
        (card["data"].clone(), card["bits"].clone()),
        (json!("9501f480"), json!(26)),
        "{card}"
    );
}

fn libosdp_cp_drives_our_pd(cp: &mut JsonChild, pd: &mut JsonChild) {
    cp.send(json!({"op": "led", "address": 1, "color": "green"}));
    cp.send(json!({"op": "output", "address": 1, "output": 1, "control_code": 2, "timer": 0}));
    let led: Value = pd.expect(T, "LED at our PD", |v| v["event"] == "led");
    assert_eq!(led["permanent_color"], "green", "{led}");
    let out = pd.expect(T, "output at our PD", |v| v["event"] == "output");
    assert_eq!(out["output"], 1);
}

#[test]
fn libosdp_cp_with_our_plaintext_pd() {
    let pty = PtyPair::new();
    let mut pd = our_pd(&pty, &[]);
    let mut cp = libosdp("libosdp_cp.py", &pty.a, &["1"]);
    let online = cp.expect(T, "online", |v| v["event"] == "online");
    assert_eq!(online["secure"], false);
    libosdp_cp_sees_our_card(&mut cp, &mut pd);
    libosdp_cp_drives_our_pd(&mut cp, &mut pd);
}

#[test]
fn libosdp_cp_with_our_pd_in_secure_channel() {
    let pty = PtyPair::new();
    let key = key_file(
        pty.dir.path(),
        "pd.key",
        &hex::decode(KEY_1).unwrap().try_into().unwrap(),
    );
    let mut pd = our_pd(&pty, &["--scbk-file", key.to_str().unwrap()]);
    let mut cp = libosdp("libosdp_cp.py", &pty.a, &[&format!("1,scbk={KEY_1}")]);
    cp.expect(T, "secure online", |v| {
        v["event"] == "online" && v["secure"] == true
    });
    pd.expect(T, "our PD in SC", |v| v["event"] == "secure_channel");
    libosdp_cp_sees_our_card(&mut cp, &mut pd);
    libosdp_cp_drives_our_pd(&mut cp, &mut pd);
}

#[test]
fn libosdp_cp_installs_a_key_on_our_pd() {
    let pty = PtyPair::new();
    let mut pd = our_pd(&pty, &["--install-mode"]);
    let mut cp = libosdp(
        "libosdp_cp.py",
        &pty.a,
        &[&format!("1,scbk={KEY_2},install")],
    );
    pd.expect(T, "KEYSET at our PD", |v| v["event"] == "keyset");
    cp.expect(T, "secure online with the new key", |v| {
        v["event"] == "online" && v["secure"] == true
    });
    libosdp_cp_sees_our_card(&mut cp, &mut pd);
}
