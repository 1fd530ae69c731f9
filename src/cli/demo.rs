//! `portier demo`: a whole building on this machine with no hardware.
//!
//! Three of Portier's own PD simulators (revolving entrance, side entrance,
//! lab door) share one pseudo-terminal bus, each with a fresh Secure
//! Channel key; the example rules are signed with a fresh demo key and
//! applied; the daemon runs exactly as `portier run` does, from a config
//! made from `config/portier.example.toml`. Then the example cardholders
//! badge, doors open and close, security releases the revolving door, and
//! every journaled event and every command a reader received is printed as
//! it happens. Each scripted step waits for its effect in the journal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use portier::config::Config;
use portier::driver::daemon::Control;
use portier::driver::gateway::{self, RunOptions, Running};
use portier::driver::simulator::{SimOp, run_simulated_pds};
use portier::event::Event;
use portier::journal::JournalReader;
use portier::osdp::message::{Command, LedColor, OutputAction, RawCard};
use portier::osdp::peripheral::{Peripheral, PeripheralConfig, PeripheralEvent};
use portier::osdp::secure::Scbk;
use portier::rules::{CredentialKey, envelope, source, wiegand};
use portier::site::remote::RemoteAction;
use portier::store::Store;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_serial::SerialPort;

const EXAMPLE_CONFIG: &str = include_str!("../../config/portier.example.toml");
const EXAMPLE_RULES: &str = include_str!("../../config/rules.example.toml");

/// PD names and addresses of the example building.
const PDS: [(&str, u8); 3] = [
    ("entrance-reader", 1),
    ("side-reader", 2),
    ("lab-reader", 3),
];

/// `portier demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Keep the demo's state (keys, config, rules, journal) here instead of
    /// a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Run the script once and exit (instead of idling until Ctrl-C).
    #[arg(long)]
    once: bool,
    /// Append this file (an `[uplink]` section) to the demo's config: the
    /// demo building then sends its events to a broker and `portier
    /// central` (scripts/demo-central sets both up).
    #[arg(long)]
    uplink: Option<PathBuf>,
    /// Pause between scripted steps, milliseconds (for reading along).
    #[arg(long, default_value_t = 1200)]
    pace_ms: u64,
}

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    say(&format!("demo building in {}", dir.display()));

    // The bus: our simulators on the master side of a pseudo-terminal.
    let (master, slave) =
        tokio_serial::SerialStream::pair().context("creating a pseudo-terminal")?;
    let port = slave.name().context("pseudo-terminal without a name")?;
    let mut pds = Vec::new();
    for (name, address) in PDS {
        let mut key = [0u8; 16];
        portier::clock::os_entropy(&mut key);
        write_private(&dir.join(format!("{name}.scbk")), &hex::encode(key))?;
        pds.push(Peripheral::new(PeripheralConfig::simulator(
            address,
            Some(Scbk(key)),
        )));
    }
    let central = central_key(&dir)?;
    let config_path = write_demo_config(&dir, &port, args.uplink.as_deref())?;
    let mut config = Config::load(&config_path)?;
    config.check()?;
    sign_and_apply_rules(&central, &config)?;
    // The admin page on loopback, with a login made for this run only.
    let login = demo_login(&mut config)?;

    let (shutdown_tx, shutdown) = watch::channel(false);
    let (ops, ops_rx) = mpsc::channel(16);
    let (pd_events_tx, mut pd_events) = mpsc::channel(256);
    // The readers outlive the daemon so it never sees its bus vanish.
    let (readers_off, readers_shutdown) = watch::channel(false);
    tokio::spawn(run_simulated_pds(
        master,
        pds,
        ops_rx,
        pd_events_tx,
        readers_shutdown,
    ));
    let (started_tx, started) = oneshot::channel();
    let daemon = tokio::spawn(gateway::run(
        config,
        RunOptions::default(),
        shutdown.clone(),
        Some(started_tx),
    ));
    let running = match started.await {
        Ok(r) => r,
        Err(_) => {
            daemon.await??;
            bail!("the daemon stopped before it started");
        }
    };
    if let (Some((addr, fingerprint)), Some((user, password))) = (&running.admin, &login) {
        say(&format!(
            "admin page: https://{addr}/  login {user} / {password}  (self-signed certificate, SHA-256 {fingerprint})"
        ));
    }
    // Print what readers are told to do, as it happens.
    tokio::spawn(async move {
        while let Some((address, event)) = pd_events.recv().await {
            if let Some(line) = describe_pd_event(address, &event) {
                println!("            {line}");
            }
        }
    });
    let journal = running.journal.clone();
    let mut printer = Printer { journal, next: 1 };
    let script = Script {
        running: &running,
        ops: &ops,
        pace: Duration::from_millis(args.pace_ms),
    };
    let outcome = script.play(&mut printer).await;
    printer.print_new()?;
    if let Err(e) = outcome {
        let _ = shutdown_tx.send(true);
        return Err(e);
    }
    if !args.once {
        say("script done; the building keeps running — Ctrl-C to stop");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                () = tokio::time::sleep(Duration::from_millis(200)) => { printer.print_new()?; }
            }
        }
    }
    let _ = shutdown_tx.send(true);
    daemon.await??;
    let _ = readers_off.send(true);
    drop(slave);
    Ok(ExitCode::SUCCESS)
}

fn say(text: &str) {
    println!("==> {text}");
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}

/// The example config with this demo's paths.
fn write_demo_config(dir: &Path, port: &str, uplink: Option<&Path>) -> anyhow::Result<PathBuf> {
    let mut text = EXAMPLE_CONFIG
        .replace("\"/var/lib/portier\"", "\"state\"")
        .replace("\"/etc/portier/central.pub\"", "\"central.pub\"")
        .replace("\"/dev/ttyUSB0\"", &format!("{port:?}"));
    for (name, _) in PDS {
        text = text.replace(
            &format!("\"/etc/portier/keys/{name}.scbk\""),
            &format!("\"{name}.scbk\""),
        );
    }
    if let Some(u) = uplink {
        let section =
            std::fs::read_to_string(u).with_context(|| format!("reading {}", u.display()))?;
        text.push('\n');
        text.push_str(&section);
    }
    let path = dir.join("portier.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A fresh demo signing key ("central"), written as `central.key`/`.pub`.
/// Listen on loopback only, on a free port, and add an operator login with
/// a random password for this run (never a fixed default).
fn demo_login(config: &mut Config) -> anyhow::Result<Option<(String, String)>> {
    let Some(admin) = &mut config.admin else {
        return Ok(None);
    };
    admin.listen = "127.0.0.1:0".parse()?;
    let mut random = [0u8; 20];
    let mut salt = [0u8; 16];
    portier::clock::os_entropy(&mut random);
    portier::clock::os_entropy(&mut salt);
    let (entry, password) = portier::admin::auth::generated_login(
        "demo",
        portier::admin::Role::Operator,
        &random,
        &salt,
    )
    .map_err(anyhow::Error::msg)?;
    admin.users.push(entry);
    Ok(Some(("demo".into(), password)))
}

/// A `--dir` used before keeps its key, so its stored rules still verify.
fn central_key(dir: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let path = dir.join("central.key");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        let seed = portier::config::read_hex32(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
    }
    let mut seed = [0u8; 32];
    portier::clock::os_entropy(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    write_private(&dir.join("central.key"), &hex::encode(seed))?;
    std::fs::write(
        dir.join("central.pub"),
        hex::encode(key.verifying_key().as_bytes()),
    )?;
    Ok(key)
}

/// The example rules signed with the demo key and applied.
fn sign_and_apply_rules(key: &ed25519_dalek::SigningKey, config: &Config) -> anyhow::Result<()> {
    let now = portier::driver::daemon::wall_now();
    let expires = now.checked_add(jiff::SignedDuration::from_hours(24 * 30))?;
    let store = Store::open(
        &config.rules_dir(),
        config.trusted_keys(&config.file)?,
        &config.gateway.id,
        &config.gateway.building,
    )?;
    // Versions only go up: a demo directory used before gets the next one.
    let version = store.highest()?.map_or(1, |(v, _)| v + 1);
    let snapshot = source::parse_rules(
        "config/rules.example.toml",
        EXAMPLE_RULES,
        version,
        now,
        expires,
    )?;
    let bytes = envelope::sign_snapshot(key, &snapshot)?;
    let applied = store.apply_snapshot(&bytes, now)?;
    say(&format!(
        "example rules signed with the demo key (id {}), version {} applied: {} cardholders",
        envelope::key_id(&key.verifying_key()),
        applied.version,
        applied.credentials
    ));
    Ok(())
}

/// Prints journal events as they are appended.
struct Printer {
    journal: Arc<JournalReader>,
    next: u64,
}

impl Printer {
    fn print_new(&mut self) -> anyhow::Result<Vec<Event>> {
        let events = self.journal.after(self.next - 1, 1000)?;
        for e in &events {
            let time =
                e.at.to_zoned(jiff::tz::TimeZone::system())
                    .strftime("%H:%M:%S");
            println!("  #{:<4} {time}  {}", e.seq, e.kind.describe());
            self.next = e.seq + 1;
        }
        Ok(events)
    }
}

struct Script<'a> {
    running: &'a Running,
    ops: &'a mpsc::Sender<SimOp>,
    pace: Duration,
}

impl Script<'_> {
    async fn play(&self, printer: &mut Printer) -> anyhow::Result<()> {
        say("waiting for the three readers to come online in Secure Channel");
        self.until(printer, "readers online", |e| {
            e.iter().filter(|e| e["type"] == "pd_online").count() >= 3
        })
        .await?;

        say("staff member (42:1001) badges at the side entrance, opens and closes the door");
        self.badge(2, "h10301:42:1001").await?;
        self.until(printer, "decision", |e| {
            has(e, "access_granted", "side-entrance")
        })
        .await?;
        self.input(2, 0, true).await?;
        self.until(printer, "entry", |e| {
            e.iter().any(|e| e["type"] == "presence")
        })
        .await?;
        self.input(2, 0, false).await?;
        self.until(printer, "door closed", |e| {
            has(e, "door_closed", "side-entrance")
        })
        .await?;

        say("the same person's lost pass (42:1005) at the side entrance");
        self.badge(2, "h10301:42:1005").await?;
        self.until(printer, "deny", |e| {
            has(e, "access_denied", "side-entrance")
        })
        .await?;

        say(
            "student (42:1002) at the lab door; external contractor (42:1003) and guest (42:1004) at the side entrance",
        );
        let inside = portier::driver::daemon::ask_presence(&self.running.control)
            .await
            .unwrap_or_default();
        if inside.get(&"h10301:42:1002".into()).is_some() {
            say("the student is still in the lab wing since the last run: they badge out first");
            self.badge_at(3, 1, "h10301:42:1002").await?;
            self.until(printer, "exit decision", |e| {
                e.iter().any(|e| e["reader"] == "lab-reader:1")
            })
            .await?;
            self.input(3, 0, true).await?;
            self.until(printer, "exit from the lab wing", |e| {
                e.iter()
                    .any(|e| e["type"] == "presence" && e["direction"] == "out")
            })
            .await?;
            self.input(3, 0, false).await?;
        }
        self.badge(3, "h10301:42:1002").await?;
        self.until(printer, "lab decision", |e| decided(e, "lab-1"))
            .await?;
        say("the student walks into the lab wing (the airlock's outer door opens and closes)");
        self.input(3, 0, true).await?;
        self.until(printer, "entry into the lab wing", |e| {
            e.iter()
                .any(|e| e["type"] == "presence" && e["area"] == "lab-wing")
        })
        .await?;
        self.input(3, 0, false).await?;
        self.until(printer, "lab door closed", |e| {
            has(e, "door_closed", "lab-1")
        })
        .await?;
        say(
            "the student's card is passed back out and badged at the lab door again: anti-passback",
        );
        self.badge(3, "h10301:42:1002").await?;
        self.until(printer, "anti-passback denial", |e| {
            e.iter()
                .any(|e| e["type"] == "access_denied" && e["reason"] == "antipassback")
        })
        .await?;
        for card in ["h10301:42:1003", "h10301:42:1004"] {
            self.badge(2, card).await?;
            self.until(printer, "side decision", |e| {
                e.iter().any(|e| e["credential"] == card)
            })
            .await?;
        }

        say("staff member at the revolving door; one rotation in");
        self.badge(1, "h10301:42:1001").await?;
        self.until(printer, "revolving decision", |e| {
            decided(e, "main-revolving")
        })
        .await?;
        self.input(1, 2, true).await?;
        self.until(printer, "passage", |e| {
            e.iter().any(|e| e["type"] == "presence")
        })
        .await?;
        self.input(1, 2, false).await?;

        say("security releases one passage out of the revolving door remotely");
        let (reply, answer) = oneshot::channel();
        self.running
            .control
            .send(Control::Remote {
                source: "demo".into(),
                command: None,
                action: RemoteAction::ReleasePassage {
                    door: "main-revolving".into(),
                    direction: portier::door::Direction::Out,
                },
                reply: Some(reply),
            })
            .await?;
        answer.await?.map_err(anyhow::Error::msg)?;
        self.input(1, 3, true).await?;
        tokio::time::sleep(self.pace).await;
        self.input(1, 3, false).await?;

        say("someone pushes the side door open without a card");
        self.input(2, 0, true).await?;
        self.until(printer, "forced", |e| {
            has(e, "door_forced", "side-entrance")
        })
        .await?;
        self.input(2, 0, false).await?;
        self.until(printer, "closed", |e| {
            has(e, "door_closed", "side-entrance")
        })
        .await?;
        say("who is inside, where, since when (the muster list, kept across restarts):");
        let inside = portier::driver::daemon::ask_presence(&self.running.control)
            .await
            .unwrap_or_default();
        println!("    {}", serde_json::to_string(&inside)?);
        Ok(())
    }

    async fn badge(&self, address: u8, key: &str) -> anyhow::Result<()> {
        self.badge_at(address, 0, key).await
    }

    /// A card at reader `reader` of the PD at `address`.
    async fn badge_at(&self, address: u8, reader: u8, key: &str) -> anyhow::Result<()> {
        tokio::time::sleep(self.pace).await;
        let key: CredentialKey = key.parse()?;
        let (data, bits) = wiegand::encode(&key)?;
        let card = RawCard {
            reader,
            format: 0,
            bits,
            data,
        };
        self.ops.send(SimOp::Card { address, card }).await?;
        Ok(())
    }

    async fn input(&self, address: u8, input: usize, active: bool) -> anyhow::Result<()> {
        self.ops
            .send(SimOp::Input {
                address,
                input,
                active,
            })
            .await?;
        Ok(())
    }

    /// Print new events until the whole journal satisfies `done` (10 s).
    async fn until(
        &self,
        printer: &mut Printer,
        what: &str,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> anyhow::Result<()> {
        let mut all = Vec::new();
        for _ in 0..500 {
            for e in printer.print_new()? {
                all.push(serde_json::to_value(&e)?);
            }
            if done(&all) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("demo: no {what} within 10 s")
    }
}

fn has(events: &[serde_json::Value], kind: &str, door: &str) -> bool {
    events
        .iter()
        .any(|e| e["type"] == kind && e["door"] == door)
}

fn decided(events: &[serde_json::Value], door: &str) -> bool {
    has(events, "access_granted", door) || has(events, "access_denied", door)
}

fn describe_pd_event(address: u8, event: &PeripheralEvent) -> Option<String> {
    let name = PDS
        .iter()
        .find(|(_, a)| *a == address)
        .map_or("?", |(n, _)| *n);
    let what = match event {
        PeripheralEvent::SecureChannel => "Secure Channel established".to_owned(),
        PeripheralEvent::Command(Command::Output(outs)) => outs
            .iter()
            .map(|o| match o.action {
                OutputAction::TimedOn => format!(
                    "relay {} ON for {:.1} s",
                    o.output,
                    f64::from(o.timer_100ms) / 10.0
                ),
                OutputAction::PermanentOnAbortTimed => format!("relay {} ON", o.output),
                OutputAction::PermanentOffAbortTimed => format!("relay {} off", o.output),
                other => format!("relay {} {other:?}", o.output),
            })
            .collect::<Vec<_>>()
            .join(", "),
        PeripheralEvent::Command(Command::Led(leds)) => {
            let colour = |c: LedColor| format!("{c:?}").to_lowercase();
            format!("LED {}", colour(leds[0].temporary.on_color))
        }
        PeripheralEvent::Command(Command::Buzzer(b)) => format!("beep ×{}", b.count),
        _ => return None,
    };
    Some(format!("{name} ← {what}"))
}
