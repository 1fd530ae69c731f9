//! `portier central reader-update` and `portier central rotate-key`: a
//! reader's firmware and Secure Channel key, from the control room. Each
//! signs a command (the file's SHA-256 in it), publishes it (and the file,
//! on the gateway's `firmware` topic), then follows the gateway's
//! `reader_*` events as the running service stores them, printing each as
//! a JSON line, until the job ends.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use jiff::SignedDuration;
use portier::action::{FileDigest, ReaderAction};
use portier::central::db;
use portier::central::driver::publish_blobs;
use portier::central::{CentralConfig, GatewayId, GatewayTopics};
use portier::uplink::wire::FirmwareFile;

use super::central::new_command;

/// `portier central reader-update`.
#[derive(Debug, Args)]
pub(crate) struct ReaderUpdateArgs {
    /// The gateway.
    #[arg(long)]
    gateway: GatewayId,
    /// The reader: its PD name in the gateway's config.
    #[arg(long)]
    reader: String,
    /// The firmware file.
    #[arg(long)]
    file: PathBuf,
    /// OSDP file type (1: firmware).
    #[arg(long, default_value_t = 1)]
    file_type: u8,
    /// Refuse unless the reader reports this vendor (6 hex digits, as
    /// `portier central readers` shows it).
    #[arg(long)]
    vendor: Option<String>,
    /// Refuse unless the reader reports this model.
    #[arg(long)]
    model: Option<u8>,
    /// How long the gateway may wait for the file and for the reader to be
    /// online before it gives up, minutes (the command's lifetime; ≤ 1440).
    #[arg(long, default_value_t = 60)]
    valid_minutes: u64,
    /// Give up following after this many seconds (0: send and return).
    /// Default: the command's lifetime plus 10 minutes; every event the
    /// gateway sends about the update extends it to at least 10 minutes
    /// (or twice the time since the event before) from then on.
    #[arg(long)]
    timeout: Option<u64>,
}

/// `portier central rotate-key`.
#[derive(Debug, Args)]
pub(crate) struct RotateKeyArgs {
    /// The gateway.
    #[arg(long)]
    gateway: GatewayId,
    /// The reader: its PD name in the gateway's config.
    #[arg(long)]
    reader: String,
    /// Wait this long for the outcome, seconds (0: do not wait).
    /// Default: the command's lifetime (the gateway waits that long for
    /// the reader) plus 3.5 minutes (its wait for the reader's answer).
    #[arg(long)]
    timeout: Option<u64>,
}

pub(crate) async fn reader_update(
    config: CentralConfig,
    args: ReaderUpdateArgs,
) -> anyhow::Result<ExitCode> {
    let data =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    // The file travels with its command id in one MQTT message.
    let limit = config
        .uplink()
        .max_firmware_bytes()
        .min((config.broker.max_message_mib << 20).saturating_sub(64 << 10));
    if data.is_empty() || data.len() > limit {
        bail!(
            "{}: {} bytes; a gateway takes 1..={limit}",
            args.file.display(),
            data.len()
        );
    }
    if let Some(v) = &args.vendor
        && (v.len() != 6 || hex::decode(v).is_err())
    {
        bail!("--vendor {v:?}: 6 hex digits expected");
    }
    if !(1..=24 * 60).contains(&args.valid_minutes) {
        bail!("--valid-minutes: 1..=1440");
    }
    let sha256 = FileDigest::of(&data);
    let action = ReaderAction::ReaderUpdate {
        reader: args.reader.as_str().into(),
        sha256,
        bytes: data.len() as u64,
        file_type: args.file_type,
        vendor: args.vendor.clone(),
        model: args.model,
    };
    let pg = db::connect(&config.postgres).await?;
    let valid = args.valid_minutes * 60;
    let (command, signed) = new_command(&config, &pg, &args.gateway, action.into(), valid).await?;
    let topics = GatewayTopics::new(&config.central.topic_root, &args.gateway);
    let file = serde_cbor::to_vec(&FirmwareFile {
        command: command.id.clone(),
        data,
    })?;
    // The command first: the gateway holds a file that comes before its
    // command for a while, but the common order costs it nothing.
    publish_blobs(
        &config,
        vec![
            (topics.command, signed, false),
            (topics.firmware, file, false),
        ],
    )
    .await?;
    eprintln!(
        "{}",
        serde_json::json!({"sent": command.id, "gateway": args.gateway.as_str(),
                           "reader": args.reader, "sha256": sha256.to_string()})
    );
    let timeout = args.timeout.unwrap_or(valid + 600);
    follow(&pg, &args.gateway, &command, timeout, Job::Update).await
}

pub(crate) async fn rotate_key(
    config: CentralConfig,
    args: RotateKeyArgs,
) -> anyhow::Result<ExitCode> {
    let action = ReaderAction::RotateKey {
        reader: args.reader.as_str().into(),
    };
    let pg = db::connect(&config.postgres).await?;
    let valid = config.signing.command_valid_seconds;
    let (command, signed) = new_command(&config, &pg, &args.gateway, action.into(), valid).await?;
    let topic = GatewayTopics::new(&config.central.topic_root, &args.gateway).command;
    publish_blobs(&config, vec![(topic, signed, false)]).await?;
    eprintln!(
        "{}",
        serde_json::json!({"sent": command.id, "gateway": args.gateway.as_str(), "reader": args.reader})
    );
    // The gateway waits for the reader until expiry, then up to 3 min for
    // its answer.
    let timeout = args.timeout.unwrap_or(valid + 180 + 30);
    follow(&pg, &args.gateway, &command, timeout, Job::Rotation).await
}

/// What is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// A firmware update: kept by the gateway over a restart.
    Update,
    /// A key rotation: not kept (the key files are).
    Rotation,
}

/// At least this much more time to follow after each event of an update
/// (or twice the time since the one before: a tenth of a large file at
/// 9 600 baud takes long).
const NEWS_EXTENDS: Duration = Duration::from_secs(600);

/// How far before the command's issue time its events are looked for (the
/// gateway's clock may be behind central's).
const CLOCK_MARGIN: SignedDuration = SignedDuration::from_hours(1);

/// Print the command's events as they are stored, until one ends it. A
/// gateway restart after a rotation began ends it (its key files settle
/// at the reader's next bring-up); an update is kept by the gateway and
/// followed on.
async fn follow(
    pg: &tokio_postgres::Client,
    gateway: &GatewayId,
    command: &portier::command::Command,
    timeout: u64,
    job: Job,
) -> anyhow::Result<ExitCode> {
    if timeout == 0 {
        println!("{}", serde_json::json!({"command": command.id}));
        return Ok(ExitCode::SUCCESS);
    }
    let since = command.issued_at.checked_sub(CLOCK_MARGIN)?;
    let mut deadline = portier::clock::timer() + Duration::from_secs(timeout);
    let mut last_news = portier::clock::timer();
    let mut printed = HashSet::new();
    // The latest `*_started` of the job (journal, seq): a restart after it
    // (the same journal, a higher seq) cut the job.
    let mut started: Option<(Vec<u8>, i64)> = None;
    loop {
        for (journal, seq, event) in
            db::reader_command_events(pg, gateway, &command.id, since).await?
        {
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            let after_start = started
                .as_ref()
                .is_some_and(|(j, s)| *j == journal && seq > *s);
            if kind == "daemon_started" {
                if !after_start || !printed.insert((journal.clone(), seq)) {
                    continue;
                }
                println!("{event}");
                if job == Job::Rotation {
                    bail!(
                        "{gateway} restarted during the rotation: its key files settle at the reader's next Secure Channel bring-up (`reader_key_rotated` without a command when it took the new key); send the command again to rotate"
                    );
                }
                eprintln!(
                    "{gateway} restarted during the update: it sends the file again from the start"
                );
                continue;
            }
            if !printed.insert((journal.clone(), seq)) {
                continue;
            }
            println!("{event}");
            let now = portier::clock::timer();
            if job == Job::Update {
                let gap = now.duration_since(last_news);
                deadline = deadline.max(now + NEWS_EXTENDS.max(gap * 2));
            }
            last_news = now;
            match kind.as_str() {
                "reader_update_started" | "reader_key_rotation_started" => {
                    started = Some((journal, seq));
                }
                "reader_update_finished" | "reader_key_rotated" => return Ok(ExitCode::SUCCESS),
                // A second delivery of the command (QoS 1) is refused as a
                // replay; the first is being carried out.
                "command_refused"
                    if event["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("already seen")) => {}
                "reader_update_failed" | "reader_key_rotation_failed" | "command_refused" => {
                    return Ok(ExitCode::FAILURE);
                }
                _ => {}
            }
        }
        if portier::clock::timer() >= deadline {
            bail!(
                "no end from {gateway} to command {} in time (is `portier central` running and the gateway online? see `portier central status`); the gateway may still carry it out",
                command.id
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
