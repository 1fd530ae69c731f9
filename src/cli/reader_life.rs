//! `portier reader rotate-key` and `portier reader update`: a reader's
//! life after install — a new Secure Channel key, new firmware.
//!
//! Both bring one PD up on the bus (the daemon must not hold the port),
//! drive the bus core through the serial driver, and report as JSON
//! lines on standard output (`update` draws a progress bar on standard
//! error unless `--json`). No key is ever printed or logged.
//!
//! Test hook: `PORTIER_TEST_CRASH_AT=<point>` aborts the process at a named
//! step of `rotate-key` (`next_written`, `keyset_acked`, `new_session`,
//! `promoted`), as a power cut would; the crash tests use it to show that
//! every step leaves a key that reaches the reader.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use portier::driver::clock;
use portier::driver::key_files::{KeyFiles, crash_point};
use portier::driver::serial::BusRequest;
use portier::osdp::secure::Scbk;
use portier::osdp::transfer::{FileOffer, MAX_FILE_LEN, TransferFailure};
use portier::osdp::{BusEvent, KeyPolicy, RotationFailure};

use super::reader::{RotateArgs, RunningBus, UpdateArgs, alarm_hint, identity_json, start_bus};

/// The next event from the bus, or an error at the deadline.
async fn next_event(
    bus: &mut RunningBus,
    deadline: tokio::time::Instant,
) -> anyhow::Result<BusEvent> {
    match tokio::time::timeout_at(deadline, bus.events.recv()).await {
        Ok(Some((_, e))) => Ok(e),
        Ok(None) => bail!("bus stopped"),
        Err(_) => bail!("timed out"),
    }
}

async fn stop(bus: RunningBus) {
    let _ = bus.shutdown.send(true);
    let _ = bus.task.await;
}

/// Wait until the PD is online; settle a rotation an earlier run left
/// (`Some(pending)` when both keys were tried).
async fn until_online(
    bus: &mut RunningBus,
    address: u8,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(BusEvent, Option<bool>)> {
    let mut resolved = None;
    loop {
        let event = next_event(bus, deadline)
            .await
            .with_context(|| format!("PD {address} not online"))?;
        match event {
            BusEvent::KeyResolved { pending, .. } => resolved = Some(pending),
            online @ BusEvent::Online { .. } => return Ok((online, resolved)),
            BusEvent::SecurityAlarm { alarm, .. } => {
                bail!(
                    "PD {address}: Secure Channel failed: {}",
                    alarm_hint(&alarm)
                )
            }
            BusEvent::Offline { .. } => {
                bail!("PD {address} offline: no valid reply (check wiring, address, baud rate)")
            }
            _ => {}
        }
    }
}

pub(crate) async fn rotate_key(args: RotateArgs) -> anyhow::Result<ExitCode> {
    let address = args.port.link.address;
    let files = KeyFiles::new(&args.key_file);
    let policy = files.load()?;
    if matches!(policy, KeyPolicy::Rotating { .. }) {
        eprintln!(
            "{} exists: an earlier rotation was cut short; the reader holds one of the two keys",
            files.next().display()
        );
    }
    let deadline = portier::clock::timer() + Duration::from_secs(args.timeout);
    let mut bus = start_bus(&args.port, policy)?;
    let outcome = rotate_on(&mut bus, &files, address, deadline).await;
    stop(bus).await;
    outcome
}

async fn rotate_on(
    bus: &mut RunningBus,
    files: &KeyFiles,
    address: u8,
    deadline: tokio::time::Instant,
) -> anyhow::Result<ExitCode> {
    let (_, resolved) = until_online(bus, address, deadline).await?;
    if let Some(pending) = resolved {
        files.settle(pending)?;
        println!(
            "{}",
            json!({"event": "earlier_rotation_settled", "address": address,
                   "reader_held": if pending { "pending key (now in force)" } else { "current key (pending discarded)" }})
        );
    }
    // Step 1: the new key on disk before the reader sees it.
    let mut key = [0u8; 16];
    clock::os_entropy(&mut key);
    let key = Scbk(key);
    portier::config::check_configured_scbk(&key)?;
    files.write_next(&key)?;
    crash_point("next_written");
    tracing::info!(address, next = %files.next().display(), "key rotation: new key written, sending KEYSET in Secure Channel");
    // Step 2: KEYSET inside the session.
    let (started, result) = oneshot::channel();
    bus.link
        .requests
        .send(BusRequest::RotateKey {
            address,
            key,
            started,
        })
        .await
        .context("bus stopped")?;
    if let Err(e) = result.await.context("bus stopped")? {
        files.discard_next()?;
        bail!("PD {address}: {e}; nothing changed");
    }
    let mut proven = false;
    loop {
        let event = next_event(bus, deadline).await.with_context(|| {
            format!(
                "PD {address}: rotation unfinished; both keys kept ({} and {}), the next bring-up finds out which the reader holds",
                files.current().display(),
                files.next().display()
            )
        })?;
        match event {
            BusEvent::KeyRotated { .. } => crash_point("keyset_acked"),
            BusEvent::KeyResolved { pending: true, .. } => proven = true,
            BusEvent::KeyResolved { pending: false, .. } => {
                files.discard_next()?;
                bail!(
                    "PD {address} acknowledged the new key but still uses the old one; nothing changed"
                );
            }
            BusEvent::Online { secure: true, .. } if proven => {
                // Step 3 done: a session on the new key. Step 4: retire the old.
                crash_point("new_session");
                files.promote()?;
                crash_point("promoted");
                tracing::info!(address, key_file = %files.current().display(), "key rotation: done, old key retired");
                println!(
                    "{}",
                    json!({"event": "key_rotated", "address": address, "key_file": files.current()})
                );
                return Ok(ExitCode::SUCCESS);
            }
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::Nak(code),
                ..
            } => {
                files.discard_next()?;
                bail!("PD {address} refused the new key ({code:?}); it keeps the old one");
            }
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::NotSent,
                ..
            } => {
                files.discard_next()?;
                bail!("PD {address} went offline before the new key was sent; nothing changed");
            }
            BusEvent::KeyRotationFailed {
                reason: RotationFailure::Offline,
                ..
            }
            | BusEvent::Offline { .. }
            | BusEvent::SecurityAlarm { .. } => bail!(
                "PD {address} lost during the rotation; both keys kept ({} and {}): run rotate-key or probe again to settle which the reader holds",
                files.current().display(),
                files.next().display()
            ),
            _ => {}
        }
    }
}

/// Parse 64 hex digits.
fn parse_sha256(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text.trim()).context("--sha256: not hex")?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| anyhow::anyhow!("--sha256: {} bytes, expected 32", b.len()))
}

/// Read the file and check it against the expected hash, before the bus
/// is even opened.
fn read_checked(args: &UpdateArgs) -> anyhow::Result<Arc<[u8]>> {
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if meta.len() > MAX_FILE_LEN as u64 {
        bail!(
            "{}: {} bytes, more than the {MAX_FILE_LEN} a transfer takes",
            args.file.display(),
            meta.len()
        );
    }
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if let Some(expected) = &args.sha256 {
        let expected = parse_sha256(expected)?;
        let actual: [u8; 32] = Sha256::digest(&data).into();
        if actual != expected {
            bail!(
                "{}: SHA-256 is {}, not the expected {}; nothing sent",
                args.file.display(),
                hex::encode(actual),
                hex::encode(expected)
            );
        }
    }
    Ok(data.into())
}

struct Progress {
    json: bool,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl Progress {
    fn show(&mut self, address: u8, confirmed: u32, total: u32) {
        let now = portier::clock::timer();
        if self
            .last_drawn
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
            && confirmed < total
        {
            return;
        }
        self.last_drawn = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(0.001);
        let rate = f64::from(confirmed) / secs;
        let eta = (rate > 0.0).then(|| f64::from(total - confirmed) / rate);
        if self.json {
            println!(
                "{}",
                json!({"event": "progress", "address": address, "confirmed": confirmed,
                       "total": total, "bytes_per_second": rate.round(),
                       "eta_seconds": eta.map(f64::round)})
            );
        } else {
            let width = 30usize;
            let done = (usize::try_from(confirmed).unwrap_or(0) * width)
                / usize::try_from(total).unwrap_or(1).max(1);
            eprint!(
                "\r[{}{}] {:>3}% {confirmed}/{total} B {:.1} KB/s ETA {}   ",
                "#".repeat(done),
                ".".repeat(width - done),
                u64::from(confirmed) * 100 / u64::from(total.max(1)),
                rate / 1000.0,
                eta.map_or("-".to_owned(), |s| format!(
                    "{}m{:02}s",
                    s as u64 / 60,
                    s as u64 % 60
                )),
            );
        }
    }
}

pub(crate) async fn update(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    let data = read_checked(&args)?;
    let policy = match &args.scbk_file {
        Some(path) => KeyFiles::new(path).load()?,
        None => KeyPolicy::Plaintext,
    };
    let deadline = portier::clock::timer() + Duration::from_secs(args.timeout);
    let mut bus = start_bus(&args.port, policy)?;
    let outcome = update_on(&mut bus, &args, data, deadline).await;
    stop(bus).await;
    outcome
}

async fn update_on(
    bus: &mut RunningBus,
    args: &UpdateArgs,
    data: Arc<[u8]>,
    deadline: tokio::time::Instant,
) -> anyhow::Result<ExitCode> {
    let address = args.port.link.address;
    let (online, _) = until_online(bus, address, deadline).await?;
    let BusEvent::Online { identity, .. } = online else {
        unreachable!("until_online returns Online")
    };
    // The reader's identity against what the file is for.
    if let Some(id) = &identity {
        if let Some(vendor) = &args.vendor
            && !vendor.eq_ignore_ascii_case(&hex::encode(id.vendor))
        {
            bail!(
                "PD {address} reports vendor {}, the file is for {vendor}; nothing sent",
                hex::encode(id.vendor)
            );
        }
        if let Some(model) = args.model
            && model != id.model
        {
            bail!(
                "PD {address} reports model {}, the file is for model {model}; nothing sent",
                id.model
            );
        }
    } else if args.vendor.is_some() || args.model.is_some() {
        eprintln!("PD {address} did not report its identity: vendor and model not checked");
    }
    let total = data.len();
    println!(
        "{}",
        json!({"event": "update_started", "address": address, "bytes": total,
               "sha256": hex::encode(Sha256::digest(&data[..])),
               "identity": identity_json(&identity)})
    );
    let mut progress = Progress {
        json: args.json,
        started: portier::clock::timer(),
        last_drawn: None,
    };
    for attempt in 1..=ATTEMPTS {
        let offer = FileOffer {
            file_type: args.file_type,
            data: data.clone(),
            fragment: args.fragment,
        };
        let (started, result) = oneshot::channel();
        bus.link
            .requests
            .send(BusRequest::StartTransfer {
                address,
                offer,
                started,
            })
            .await
            .context("bus stopped")?;
        result.await.context("bus stopped")??;
        match follow(bus, address, &mut progress).await? {
            Ok(reboot) => {
                if !args.json {
                    eprintln!();
                }
                let secs = portier::clock::timer()
                    .duration_since(progress.started)
                    .as_secs_f64();
                println!(
                    "{}",
                    json!({"event": "update_finished", "address": address, "bytes": total,
                           "seconds": (secs * 1000.0).round() / 1000.0,
                           "bytes_per_second": (total as f64 / secs.max(0.001)).round(),
                           "reboot": reboot, "attempts": attempt})
                );
                return Ok(ExitCode::SUCCESS);
            }
            // The PD was lost (a reply later than the timeout, a reset):
            // once it is back, the transfer starts over cleanly (osdp_ABORT,
            // offset 0).
            Err(TransferFailure::Offline) if attempt < ATTEMPTS => {
                if !args.json {
                    eprintln!();
                }
                println!(
                    "{}",
                    json!({"event": "update_restarting", "address": address,
                           "attempt": attempt + 1, "reason": "the PD went offline"})
                );
                let back = portier::clock::timer() + Duration::from_secs(60);
                until_online(bus, address, back).await?;
            }
            Err(reason) => {
                if !args.json {
                    eprintln!();
                }
                bail!("PD {address}: update failed: {reason}");
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// How many times a transfer is started when the PD goes offline during it.
const ATTEMPTS: u32 = 3;

/// Follow one transfer to its end: `Ok(reboot)` or why it failed.
async fn follow(
    bus: &mut RunningBus,
    address: u8,
    progress: &mut Progress,
) -> anyhow::Result<Result<bool, TransferFailure>> {
    loop {
        // No deadline while bytes move: the core gives up on a stall.
        let Some((_, event)) = bus.events.recv().await else {
            bail!("bus stopped");
        };
        match event {
            BusEvent::TransferProgress {
                confirmed, total, ..
            } => progress.show(address, confirmed, total),
            BusEvent::TransferFinished { reboot, .. } => return Ok(Ok(reboot)),
            BusEvent::TransferFailed { reason, .. } => return Ok(Err(reason)),
            _ => {}
        }
    }
}
