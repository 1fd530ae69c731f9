//! `portier snapshot …`: build, inspect, delta, apply and decide.
//!
//! The only place of the rules side that reads files and the clock; the
//! rules themselves are sans-IO (`portier::rules`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ed25519_dalek::SigningKey;
use jiff::{SignedDuration, Timestamp};
use portier::config::{Config, read_hex32};
use portier::ids::DoorId;
use portier::rules::envelope::{
    SNAPSHOT_CONTEXT, SignedBlobRef, VerifiedDelta, decode_snapshot_payload, key_id, sign_delta,
    sign_snapshot,
};
use portier::rules::{Card, CredentialKey, TrustedKeys, source, verify_snapshot, wiegand};
use portier::site::decision::{self, Presented, Situation, Verdict, When};
use portier::store::Store;

/// `portier snapshot` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SnapshotCmd {
    /// Build a signed snapshot from a TOML rules file.
    Build {
        /// Rules file (TOML, see config/rules.example.toml).
        #[arg(long)]
        rules: PathBuf,
        /// Signing key file (64 hex digits).
        #[arg(long)]
        key: PathBuf,
        /// Snapshot version (monotonic).
        #[arg(long)]
        version: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days from issue.
        #[arg(long, default_value_t = 30)]
        expires_in_days: u32,
        /// Issue time (RFC 3339); default now.
        #[arg(long)]
        issued_at: Option<Timestamp>,
    },
    /// Summarise a snapshot as JSON; verify it when a public key is given.
    Inspect {
        /// Snapshot file.
        file: PathBuf,
        /// Public key file to verify with.
        #[arg(long)]
        pubkey: Option<PathBuf>,
    },
    /// Build a signed delta from a TOML changes file.
    Delta {
        /// Version the delta applies to.
        #[arg(long)]
        base_version: u64,
        /// Changes file (TOML: gateway_id, building, blocks, unblocks, upserts, removals).
        #[arg(long)]
        changes: PathBuf,
        /// Signing key file.
        #[arg(long)]
        key: PathBuf,
        /// Version after the delta.
        #[arg(long)]
        version: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days from issue.
        #[arg(long, default_value_t = 30)]
        expires_in_days: u32,
        /// Issue time (RFC 3339); default now.
        #[arg(long)]
        issued_at: Option<Timestamp>,
    },
    /// Verify and store a snapshot or delta in the gateway's state directory.
    Apply {
        /// Snapshot or delta file.
        file: PathBuf,
        /// Daemon config (gateway, trust).
        #[arg(long)]
        config: PathBuf,
        /// Hand the file to the running daemon through its control socket
        /// (decisions go on during the apply) instead of opening the store.
        #[arg(long)]
        control_socket: Option<PathBuf>,
    },
    /// Verify a snapshot and decide one card read at a given time.
    Decide {
        /// Snapshot file.
        file: PathBuf,
        /// Public key file to verify with.
        #[arg(long)]
        pubkey: PathBuf,
        /// Door id.
        #[arg(long)]
        door: String,
        /// H10301 card as FACILITY:NUMBER.
        #[arg(long, conflicts_with = "raw", required_unless_present = "raw")]
        card: Option<String>,
        /// Raw reader bits as HEX/BITS.
        #[arg(long)]
        raw: Option<String>,
        /// PIN typed.
        #[arg(long)]
        pin: Option<String>,
        /// The door is in lockdown (decided as the door would: the same
        /// path as the gateway core and the admin "why" box).
        #[arg(long)]
        lockdown: bool,
        /// Time of the read (RFC 3339).
        #[arg(long)]
        at: Timestamp,
    },
}

fn now() -> Timestamp {
    portier::clock::wall()
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let seed =
        read_hex32(&read_text(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn trusted(path: &Path) -> anyhow::Result<TrustedKeys> {
    let b =
        read_hex32(&read_text(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut k = TrustedKeys::new();
    k.add_bytes(&b)
        .with_context(|| path.display().to_string())?;
    Ok(k)
}

fn times(issued_at: Option<Timestamp>, days: u32) -> anyhow::Result<(Timestamp, Timestamp)> {
    let issued = issued_at.unwrap_or_else(now);
    let exp = issued
        .checked_add(SignedDuration::from_hours(i64::from(days) * 24))
        .context("expiry out of range")?;
    Ok((issued, exp))
}

fn write_out(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

pub(crate) fn run(cmd: SnapshotCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SnapshotCmd::Build {
            rules,
            key,
            version,
            out,
            expires_in_days,
            issued_at,
        } => {
            let text = read_text(&rules)?;
            let (issued, exp) = times(issued_at, expires_in_days)?;
            let snap =
                source::parse_rules(&rules.display().to_string(), &text, version, issued, exp)?;
            let k = signing_key(&key)?;
            let bytes = sign_snapshot(&k, &snap)?;
            write_out(&out, &bytes)?;
            println!(
                "{}",
                serde_json::json!({"out": out.display().to_string(), "version": version,
                    "key_id": key_id(&k.verifying_key()), "credentials": snap.credentials.len(),
                    "bytes": bytes.len(), "expires_at": exp.to_string()})
            );
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Inspect { file, pubkey } => inspect(&file, pubkey.as_deref()),
        SnapshotCmd::Delta {
            base_version,
            changes,
            key,
            version,
            out,
            expires_in_days,
            issued_at,
        } => {
            let text = read_text(&changes)?;
            let (issued, exp) = times(issued_at, expires_in_days)?;
            let d = source::parse_changes(
                &changes.display().to_string(),
                &text,
                base_version,
                version,
                issued,
                exp,
            )?;
            if version <= base_version {
                bail!("--version {version} must be above --base-version {base_version}");
            }
            let bytes = sign_delta(&signing_key(&key)?, &d)?;
            write_out(&out, &bytes)?;
            println!(
                "{}",
                serde_json::json!({"out": out.display().to_string(), "base_version": base_version,
                    "version": version, "blocks": d.blocks.len(), "unblocks": d.unblocks.len(),
                    "upserts": d.upserts.len(), "removals": d.removals.len()})
            );
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Apply {
            file,
            config,
            control_socket: Some(socket),
        } => {
            let bytes = read(&file)?;
            let kind = if VerifiedDelta::looks_like_delta(&bytes) {
                "delta"
            } else {
                "snapshot"
            };
            let file = std::fs::canonicalize(&file)?;
            let _ = config;
            let answer = ask_daemon(
                &socket,
                &serde_json::json!({"apply": kind, "file": file.display().to_string()}),
            )?;
            if answer["ok"] != true {
                bail!("{} refused: {}", file.display(), answer["error"]);
            }
            println!("{}", answer["result"]);
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Apply {
            file,
            config,
            control_socket: None,
        } => {
            let cfg = Config::load(&config)?;
            let keys = cfg.trusted_keys(&config)?;
            let bytes = read(&file)?;
            let store = Store::open(
                &cfg.rules_dir(),
                keys,
                &cfg.gateway.id,
                &cfg.gateway.building,
            )
            .with_context(|| {
                format!(
                    "opening {} (if the daemon is running, use --control-socket)",
                    cfg.rules_dir().display()
                )
            })?;
            if let Some(r) = store.recovery() {
                eprintln!("warning: rules store rebuilt from its last-good files: {r:?}");
            }
            if let portier::store::RulesTrust::Untrusted { key_id, version } = store.trust() {
                eprintln!(
                    "note: the rules on disk (version {}) are signed by key {key_id}, which is no \
                     longer trusted; a trusted snapshot replaces them",
                    version.map_or("?".into(), |v| v.to_string())
                );
            }
            let applied = if VerifiedDelta::looks_like_delta(&bytes) {
                store.apply_delta(&bytes, now())
            } else {
                store.apply_snapshot(&bytes, now())
            }
            .with_context(|| format!("{} refused", file.display()))?;
            println!("{}", serde_json::to_string(&applied)?);
            Ok(ExitCode::SUCCESS)
        }
        SnapshotCmd::Decide {
            file,
            pubkey,
            door,
            card,
            raw,
            pin,
            lockdown,
            at,
        } => {
            let bytes = read(&file)?;
            let keys = trusted(&pubkey)?;
            // Signature first; only then read the target it names.
            let checked = keys.check(&bytes, SNAPSHOT_CONTEXT)?;
            let snap = decode_snapshot_payload(checked.payload)?;
            let v = verify_snapshot(&bytes, &keys, &snap.gateway_id, &snap.building, at, None)?;
            let card = match (card, raw) {
                (Some(c), _) => {
                    let (f, n) = c
                        .split_once(':')
                        .context("--card must be FACILITY:NUMBER")?;
                    Card::Key(CredentialKey::H10301 {
                        facility: f.trim().parse().context("--card facility")?,
                        number: n.trim().parse().context("--card number")?,
                    })
                }
                (None, Some(r)) => {
                    let (bytes, bits) = wiegand::parse_raw(&r)?;
                    Card::Raw { bytes, bits }
                }
                (None, None) => bail!("give --card or --raw"),
            };
            let presented = Presented { card, pin };
            // No locations here: anti-passback and interlocks are the gateway's.
            let situation = Situation {
                lockdown,
                ..Situation::default()
            };
            let door = DoorId::from(door);
            let out = match decision::decide(&v, &door, &presented, When::at(at), situation) {
                Verdict::Grant {
                    credential,
                    extended,
                    name,
                    ..
                } => serde_json::json!({"decision": "grant", "credential": credential.to_string(),
                    "display_name": name, "extended_unlock": extended,
                    "rules_too_old": v.header().too_old(&door, at).is_some()}),
                Verdict::Deny { reason, .. } => {
                    serde_json::json!({"decision": "deny", "reason": reason.as_str()})
                }
            };
            let out = explain_day(out, v.header(), &door, at);
            println!("{out}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Add which day it was and what set the door's mode: `date` (local),
/// `day_type` (a special day's or `holiday`; null on an ordinary day),
/// `day_name` (a named special day), `event_window` (the window holding
/// the door, when one does).
fn explain_day(
    mut out: serde_json::Value,
    header: &portier::rules::Header,
    door: &DoorId,
    at: Timestamp,
) -> serde_json::Value {
    let (date, day) = header.day_of(at);
    out["date"] = date.to_string().into();
    out["day_type"] = day.day_type.into();
    if let Some(name) = day.name {
        out["day_name"] = name.into();
    }
    if let Some(w) = header.event_window(door, at) {
        out["event_window"] = serde_json::json!({
            "window": w.window.to_string(),
            "mode": w.mode,
            "name": w.name.as_ref().map(|n| n.as_str()),
        });
    }
    out
}

fn inspect(file: &Path, pubkey: Option<&Path>) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let blob = SignedBlobRef::parse(&bytes)?;
    if let Some(p) = pubkey {
        trusted(p)?.check(&bytes, SNAPSHOT_CONTEXT)?;
    }
    let s = decode_snapshot_payload(blob.payload)?;
    let blocked = s.credentials.iter().filter(|c| c.blocked.is_some()).count();
    println!(
        "{}",
        serde_json::json!({
            "key_id": blob.key_id,
            "verified": pubkey.is_some(),
            "schema": s.schema,
            "version": s.version,
            "gateway_id": s.gateway_id,
            "building": s.building,
            "time_zone": s.time_zone,
            "issued_at": s.issued_at.to_string(),
            "expires_at": s.expires_at.to_string(),
            "expired": now() > s.expires_at,
            "counts": {
                "credentials": s.credentials.len(),
                "blocked": blocked,
                "doors": s.doors.len(),
                "door_groups": s.door_groups.len(),
                "access_levels": s.access_levels.len(),
                "schedules": s.schedules.len(),
                "holidays": s.holidays.len(),
                "special_days": s.special_days.len(),
                "event_windows": s.event_windows.len(),
                "door_mode_schedules": s.door_mode_schedules.len(),
            }
        })
    );
    Ok(ExitCode::SUCCESS)
}

/// One request to a running daemon's control socket; its answer.
fn ask_daemon(socket: &Path, request: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    writeln!(stream, "{request}")?;
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).with_context(|| format!("daemon answered {line:?}"))
}
