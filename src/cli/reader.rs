//! `portier reader …`: technician tools for one OSDP reader — probe it,
//! install a key, or simulate one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};

use portier::driver::clock;
use portier::driver::serial::{BusStart, Capture, PortSettings, Rs485Mode, open_port, spawn_bus};
use portier::osdp::message::{Capability, PdIdentity, RawCard};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::osdp::{Bus, BusEvent, KeyPolicy, OfflineReason, PdConfig, SecurityAlarm, Timing};

/// `portier reader` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ReaderCmd {
    /// Bring one PD online (Secure Channel when a key is given), print its
    /// identity and capabilities, then stream card reads, keys and inputs.
    Probe(ProbeArgs),
    /// Install mode: give a new reader a fresh random key over SCBK-D. The
    /// key is written to --out before it is sent.
    InstallKey(InstallArgs),
    /// Run Portier's PD simulator on a serial device (tests and demos).
    Simulate(SimulateArgs),
    /// Rotate a reader's Secure Channel key: a new random key is written to
    /// KEY_FILE.next, sent with KEYSET inside the Secure Channel, proven by
    /// a new session, and only then renamed over KEY_FILE.
    RotateKey(RotateArgs),
    /// Send a firmware file to a reader (osdp_FILETRANSFER), with progress.
    Update(UpdateArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct LinkArgs {
    /// Serial device of the bus, e.g. /dev/ttyUSB0 (or one end of a PTY
    /// pair); `--bus` is the same.
    #[arg(long, alias = "bus")]
    port: PathBuf,
    /// PD address (0..=126).
    #[arg(long)]
    pub(crate) address: u8,
    /// Baud rate.
    #[arg(long, default_value_t = 9600)]
    baud: u32,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PortArgs {
    #[command(flatten)]
    pub(crate) link: LinkArgs,
    /// Use the kernel's RS-485 mode for direction control.
    #[arg(long)]
    kernel_rs485: bool,
    /// Drop the adapter's echo of our own bytes.
    #[arg(long)]
    suppress_echo: bool,
    /// Write the bus traffic to this pcap file (keys are never written).
    #[arg(long)]
    capture: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    port: PortArgs,
    /// File holding the 16-byte SCBK as 32 hex digits; requires Secure Channel.
    #[arg(long)]
    scbk_file: Option<PathBuf>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Give up when the PD is not online within this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Exit as soon as the PD is online (a reachability check).
    #[arg(long)]
    once: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    #[command(flatten)]
    pub(crate) port: PortArgs,
    /// The reader's key file (32 hex digits); the new key goes to
    /// KEY_FILE.next first (mode 0600).
    #[arg(long)]
    pub(crate) key_file: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    pub(crate) port: PortArgs,
    /// The reader's key file (Secure Channel); without it, plaintext.
    #[arg(long)]
    pub(crate) scbk_file: Option<PathBuf>,
    /// The file to send.
    pub(crate) file: PathBuf,
    /// FtType: 1 = opaque firmware image (others vendor-defined).
    #[arg(long, default_value_t = 1)]
    pub(crate) file_type: u8,
    /// Refuse the file unless its SHA-256 is this (64 hex digits).
    #[arg(long)]
    pub(crate) sha256: Option<String>,
    /// Refuse when the reader reports another vendor (OUI, 6 hex digits as
    /// `probe` shows it).
    #[arg(long)]
    pub(crate) vendor: Option<String>,
    /// Refuse when the reader reports another model number.
    #[arg(long)]
    pub(crate) model: Option<u8>,
    /// Fragment size instead of the one the reader's receive buffer allows.
    #[arg(long)]
    pub(crate) fragment: Option<u16>,
    /// Progress as JSON lines on standard output instead of a bar.
    #[arg(long)]
    pub(crate) json: bool,
    /// Give up when the PD is not online within this many seconds.
    #[arg(long, default_value_t = 10)]
    pub(crate) timeout: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct InstallArgs {
    #[command(flatten)]
    port: PortArgs,
    /// Where to write the new key (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 15)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    link: LinkArgs,
    /// Base key file; without it the simulator speaks plaintext.
    #[arg(long)]
    scbk_file: Option<PathBuf>,
    /// Accept a new key over SCBK-D (install mode).
    #[arg(long)]
    install_mode: bool,
}

pub(crate) fn run(cmd: ReaderCmd) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        ReaderCmd::Probe(args) => runtime.block_on(probe(args)),
        ReaderCmd::InstallKey(args) => runtime.block_on(install_key(args)),
        ReaderCmd::Simulate(args) => runtime.block_on(simulate(args)),
        ReaderCmd::RotateKey(args) => runtime.block_on(super::reader_life::rotate_key(args)),
        ReaderCmd::Update(args) => runtime.block_on(super::reader_life::update(args)),
    }
}

/// Read a key file: 32 hex digits, surrounding whitespace allowed.
pub(crate) fn read_key_file(path: &Path) -> anyhow::Result<Scbk> {
    portier::config::read_scbk_file(path)
        .map_err(|message| anyhow::anyhow!("key file {}: {message}", path.display()))
}

pub(crate) struct RunningBus {
    pub(crate) events: mpsc::Receiver<(portier::ids::BusId, BusEvent)>,
    pub(crate) link: portier::driver::serial::BusLink,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: tokio::task::JoinHandle<Result<(), portier::driver::serial::SerialError>>,
}

pub(crate) fn start_bus(port: &PortArgs, key: KeyPolicy) -> anyhow::Result<RunningBus> {
    let settings = PortSettings {
        path: port.link.port.clone(),
        baud: port.link.baud,
        rs485: if port.kernel_rs485 {
            Rs485Mode::Kernel
        } else {
            Rs485Mode::Adapter
        },
        suppress_echo: port.suppress_echo,
    };
    let stream = open_port(&settings)?;
    let capture = match &port.capture {
        Some(path) => Some(
            Capture::create(path)
                .with_context(|| format!("creating capture {}", path.display()))?,
        ),
        None => None,
    };
    let timing = Timing {
        poll_interval: Duration::from_millis(20),
        ..Timing::default()
    };
    let bus = Bus::new(
        timing,
        vec![PdConfig {
            address: port.link.address,
            key,
        }],
        Box::new(clock::os_entropy),
    )?;
    let (events_tx, events) = mpsc::channel(64);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let start = BusStart {
        name: "probe".into(),
        events: events_tx,
        shutdown: shutdown_rx,
        suppress_echo: settings.suppress_echo,
        capture,
    };
    let spawned = spawn_bus(stream, bus, start);
    Ok(RunningBus {
        events,
        link: spawned.link,
        shutdown,
        task: spawned.task,
    })
}

pub(crate) fn identity_json(identity: &Option<PdIdentity>) -> serde_json::Value {
    match identity {
        Some(id) => json!({
            "vendor": hex::encode(id.vendor),
            "model": id.model,
            "version": id.version,
            "serial": id.serial,
            "firmware": format!("{}.{}.{}", id.firmware[0], id.firmware[1], id.firmware[2]),
        }),
        None => serde_json::Value::Null,
    }
}

fn capabilities_json(caps: &[Capability]) -> serde_json::Value {
    caps.iter()
        .map(|c| json!({"function": c.function, "compliance": c.compliance, "count": c.count}))
        .collect()
}

pub(crate) fn alarm_hint(alarm: &SecurityAlarm) -> &'static str {
    match alarm {
        SecurityAlarm::HandshakeRefused => {
            "the reader refused Secure Channel (no SC support, or not keyed)"
        }
        SecurityAlarm::WrongKey => "the reader's key differs from the key file",
        SecurityAlarm::BadInitialRmac => "the reader's initial R-MAC did not verify",
        SecurityAlarm::PlaintextInSession => {
            "the reader answered in plaintext inside Secure Channel"
        }
        SecurityAlarm::BadMac => "a reply failed its MAC check",
        SecurityAlarm::KeySetRefused(_) => "the reader refused the new key",
    }
}

async fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let key = match &args.scbk_file {
        // Both keys after an interrupted rotation (`rotate-key`).
        Some(path) => portier::driver::key_files::KeyFiles::new(path).load()?,
        None => KeyPolicy::Plaintext,
    };
    let address = args.port.link.address;
    let mut bus = start_bus(&args.port, key)?;
    let deadline = portier::clock::timer() + Duration::from_secs(args.timeout);
    let mut online = false;
    let outcome = loop {
        let event = if online {
            tokio::select! {
                e = bus.events.recv() => e.map(|(_, e)| e),
                _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
            }
        } else {
            match tokio::time::timeout_at(deadline, bus.events.recv()).await {
                Ok(e) => e.map(|(_, e)| e),
                Err(_) => {
                    break Err(anyhow::anyhow!(
                        "PD {address} did not come online within {} s (check wiring, address, baud rate)",
                        args.timeout
                    ));
                }
            }
        };
        let Some(event) = event else {
            break Err(anyhow::anyhow!("bus stopped"));
        };
        let line = match &event {
            BusEvent::Online {
                secure,
                identity,
                capabilities,
                ..
            } => {
                online = true;
                let line = json!({"event": "online", "address": address, "secure": secure,
                       "identity": identity_json(identity), "capabilities": capabilities_json(capabilities)});
                if args.once {
                    print_line(args.json, &line);
                    break Ok(ExitCode::SUCCESS);
                }
                line
            }
            BusEvent::KeyResolved { pending, .. } => {
                json!({"event": "key_resolved", "address": address,
                       "key": if *pending { "pending" } else { "current" }})
            }
            BusEvent::SecurityAlarm { alarm, .. } => {
                break Err(anyhow::anyhow!(
                    "PD {address}: Secure Channel failed: {} ({alarm:?})",
                    alarm_hint(alarm)
                ));
            }
            BusEvent::Offline { reason, .. } => {
                if !online || matches!(reason, OfflineReason::NoReply) {
                    break Err(anyhow::anyhow!(
                        "PD {address} offline: no valid reply (check wiring, address, baud rate)"
                    ));
                }
                json!({"event": "offline", "address": address})
            }
            BusEvent::Card { card, .. } => card_json(card),
            BusEvent::Keypad { keys, .. } => {
                json!({"event": "keypad", "reader": keys.reader, "digits": String::from_utf8_lossy(&keys.digits)})
            }
            BusEvent::Inputs { inputs, .. } => json!({"event": "inputs", "inputs": inputs}),
            BusEvent::LocalStatus { status, .. } => {
                json!({"event": "local_status", "tamper": status.tamper, "power": status.power})
            }
            other => json!({"event": "other", "detail": format!("{other:?}")}),
        };
        print_line(args.json, &line);
    };
    let _ = bus.shutdown.send(true);
    let _ = bus.task.await;
    outcome
}

fn print_line(json: bool, line: &serde_json::Value) {
    if json {
        println!("{line}");
    } else {
        println!("{}", human(line));
    }
}

fn card_json(card: &RawCard) -> serde_json::Value {
    json!({"event": "card", "reader": card.reader, "format": card.format,
           "data": hex::encode(&card.data), "bits": card.bits})
}

fn human(line: &serde_json::Value) -> String {
    match line["event"].as_str() {
        Some("online") => format!(
            "online: secure channel {}; identity {}; capabilities {}",
            if line["secure"].as_bool() == Some(true) {
                "ON"
            } else {
                "off (plaintext)"
            },
            line["identity"],
            line["capabilities"]
        ),
        Some("card") => format!(
            "card: {}/{}",
            line["data"].as_str().unwrap_or(""),
            line["bits"]
        ),
        _ => line.to_string(),
    }
}

async fn install_key(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let address = args.port.link.address;
    let mut key = [0u8; 16];
    clock::os_entropy(&mut key);
    // Persist first: if we crash after the reader took the key, the key
    // must already be on disk, or the reader is orphaned.
    write_new_key_file(&args.out, &key)?;
    tracing::info!(address, out = %args.out.display(), "install mode: new key written, sending KEYSET over SCBK-D");
    eprintln!(
        "install mode: new key for PD {address} written to {}; sending it now",
        args.out.display()
    );
    let mut bus = start_bus(&args.port, KeyPolicy::Install(Scbk(key)))?;
    let deadline = portier::clock::timer() + Duration::from_secs(args.timeout);
    let mut installed = false;
    let outcome = loop {
        let event = match tokio::time::timeout_at(deadline, bus.events.recv()).await {
            Ok(Some((_, e))) => e,
            Ok(None) => break Err(anyhow::anyhow!("bus stopped")),
            Err(_) => {
                break Err(anyhow::anyhow!(
                    "PD {address}: key not installed within {} s",
                    args.timeout
                ));
            }
        };
        match event {
            BusEvent::KeyInstalled { .. } => installed = true,
            BusEvent::Online { secure: true, .. } if installed => {
                println!(
                    "{}",
                    json!({"event": "key_installed", "address": address, "key_file": args.out})
                );
                break Ok(ExitCode::SUCCESS);
            }
            BusEvent::SecurityAlarm { alarm, .. } => {
                break Err(anyhow::anyhow!(
                    "PD {address}: {} ({alarm:?}); is the reader in install mode?",
                    alarm_hint(&alarm)
                ));
            }
            BusEvent::Offline { .. } => {
                break Err(anyhow::anyhow!("PD {address} offline: no valid reply"));
            }
            _ => {}
        }
    };
    let _ = bus.shutdown.send(true);
    let _ = bus.task.await;
    outcome
}

fn write_new_key_file(path: &Path, key: &[u8; 16]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "creating key file {} (it must not exist yet)",
                path.display()
            )
        })?;
    writeln!(file, "{}", hex::encode(key))?;
    file.sync_all()?;
    Ok(())
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scbk = args.scbk_file.as_deref().map(read_key_file).transpose()?;
    let settings = PortSettings {
        path: args.link.port.clone(),
        baud: args.link.baud,
        rs485: Rs485Mode::Adapter,
        suppress_echo: false,
    };
    let mut port = open_port(&settings)?;
    let mut pd = Peripheral::new(PeripheralConfig {
        install_mode: args.install_mode,
        ..PeripheralConfig::simulator(args.link.address, scbk)
    });
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut buf = [0u8; 512];
    let mut stdin_open = true;
    println!("{}", json!({"event": "ready"}));
    loop {
        while let Some(bytes) = pd.poll_transmit() {
            port.write_all(&bytes).await?;
        }
        while let Some(event) = pd.poll_event() {
            println!("{}", peripheral_event_json(&event));
        }
        tokio::select! {
            n = port.read(&mut buf) => {
                let n = n?;
                if n == 0 { bail!("serial port closed"); }
                pd.handle_input(&buf[..n], &mut clock::os_entropy);
            }
            line = stdin.next_line(), if stdin_open => match line? {
                None => stdin_open = false,
                Some(line) => {
                    let op: serde_json::Value = serde_json::from_str(&line).context("stdin: JSON line expected")?;
                    match op["op"].as_str() {
                        Some("card") => {
                            let data = hex::decode(op["data"].as_str().unwrap_or("")).context("card data hex")?;
                            let bits = op["bits"].as_u64().unwrap_or(data.len() as u64 * 8) as u16;
                            pd.present_card(RawCard { reader: 0, format: 0, bits, data });
                        }
                        Some("keypad") => pd.press_keys(op["digits"].as_str().unwrap_or("").as_bytes()),
                        Some("input") => pd.set_input(op["input"].as_u64().unwrap_or(0) as usize, op["active"].as_bool().unwrap_or(false)),
                        Some("tamper") => pd.set_tamper(op["active"].as_bool().unwrap_or(true)),
                        Some("quit") => return Ok(ExitCode::SUCCESS),
                        other => bail!("stdin: unknown op {other:?}"),
                    }
                }
            },
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn peripheral_event_json(event: &PeripheralEvent) -> serde_json::Value {
    use portier::osdp::message::Command;
    match event {
        PeripheralEvent::SecureChannel => json!({"event": "secure_channel"}),
        PeripheralEvent::FileReceived => json!({"event": "file_received"}),
        PeripheralEvent::KeyInstalled(_) => json!({"event": "keyset"}),
        PeripheralEvent::Command(Command::Led(records)) => {
            let r = &records[0];
            json!({"event": "led", "reader": r.reader, "led": r.led,
                   "temporary_color": format!("{:?}", r.temporary.on_color).to_lowercase(),
                   "permanent_color": format!("{:?}", r.permanent.on_color).to_lowercase()})
        }
        PeripheralEvent::Command(Command::Buzzer(b)) => {
            json!({"event": "buzzer", "reader": b.reader, "tone": b.tone, "on": b.on_100ms, "off": b.off_100ms, "count": b.count})
        }
        PeripheralEvent::Command(Command::Output(records)) => {
            let r = &records[0];
            json!({"event": "output", "output": r.output, "action": format!("{:?}", r.action), "timer": r.timer_100ms})
        }
        PeripheralEvent::Command(other) => {
            json!({"event": "command", "detail": format!("{other:?}")})
        }
    }
}
