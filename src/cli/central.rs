//! `portier central …`: the central service (events into PostgreSQL, acks
//! after commit, fleet status) and the integrator verbs that sign and
//! publish rules and commands. The code is `portier::central`; this file
//! parses arguments, reads the clock and files, and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use ed25519_dalek::SigningKey;
use jiff::{SignedDuration, Timestamp};
use portier::action::CommandAction;
use portier::central::db::{self, Publication};
use portier::central::driver::publish_blobs;
use portier::central::{CentralConfig, GatewayId, GatewayTopics, import};
use portier::command::{Command, sign_command};
use portier::config::read_hex32;
use portier::rules::envelope::{Block, Delta, sign_delta, sign_snapshot};
use portier::rules::{BlockReason, CredentialKey, Header, source};
use portier::site::remote::RemoteAction;
use sha2::{Digest, Sha256};

/// `portier central`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = false)]
pub(crate) struct CentralArgs {
    /// The central config (see config/central.example.toml).
    #[arg(long, global = true, default_value = "/etc/portier/central.toml")]
    config: PathBuf,
    /// What to do; without one, run the service.
    #[command(subcommand)]
    cmd: Option<CentralCmd>,
}

/// The verbs.
#[derive(Debug, Subcommand)]
enum CentralCmd {
    /// Run the service: events into PostgreSQL, acks after commit, the
    /// fleet's status (the default).
    Run,
    /// Apply the schema migrations and exit.
    Migrate,
    /// The fleet: every gateway's state, rules, backlog and its age.
    Status {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The reader inventory of the fleet (from the gateways' status
    /// messages): vendor, model, serial, firmware, capabilities, link.
    Readers {
        /// Only readers on this firmware version or a build of it (`1.2`
        /// matches `1.2` and `1.2.7`, not `1.20.0`).
        #[arg(long)]
        firmware: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Alarms by time (forced, held open, tamper, offline, duress, clock,
    /// rules refused, commands refused, records quarantined in
    /// events_rejected), as JSON lines.
    Alarms {
        /// From (RFC 3339; default 24 h ago).
        #[arg(long)]
        since: Option<Timestamp>,
        /// Until (RFC 3339; default now).
        #[arg(long)]
        until: Option<Timestamp>,
        /// Only this gateway.
        #[arg(long)]
        gateway: Option<GatewayId>,
        /// Then stay and print each alarm event as it is stored (the
        /// security desk's feed: a duress PIN within a second), until
        /// interrupted. Without `--since`, only alarms from now on.
        #[arg(long, conflicts_with = "until")]
        follow: bool,
    },
    /// Who is inside (the muster list), from the stored `presence` events
    /// of doors with areas: one JSON object per line.
    Muster {
        /// Only this gateway.
        #[arg(long)]
        gateway: Option<GatewayId>,
        /// Only this area (the innermost area recorded, e.g. `lab-wing`).
        #[arg(long)]
        area: Option<String>,
    },
    /// Build, sign and publish (retained) a full snapshot for a gateway at
    /// the next version.
    Push(PushArgs),
    /// Block a card (lost, stolen, penalty) with a signed delta to every
    /// gateway whose rules name it (or the named ones, or all).
    Block(BlockArgs),
    /// Lift a block made with `block` (a found card): a signed delta with
    /// the unblock, to the same gateways; `--reason` is not used.
    Unblock(BlockArgs),
    /// Unlock a door remotely and wait for the gateway's answer.
    Unlock {
        /// The gateway.
        #[arg(long)]
        gateway: GatewayId,
        /// The door.
        #[arg(long)]
        door: String,
        /// Seconds (a revolving door: free rotation).
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Lock down doors (all when none is named) and wait for the answer.
    Lockdown {
        /// The gateway.
        #[arg(long)]
        gateway: GatewayId,
        /// Door ids (default: the whole building).
        #[arg(long)]
        door: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Lift a lockdown (all doors when none is named) and wait for the answer.
    Release {
        /// The gateway.
        #[arg(long)]
        gateway: GatewayId,
        /// Door ids (default: the whole building).
        #[arg(long)]
        door: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Update a reader's firmware remotely: the file's SHA-256 in a signed
    /// command, the file on `<gateway>/firmware`; prints the gateway's
    /// `reader_update_*` events until it finishes or fails.
    ReaderUpdate(super::central_upkeep::ReaderUpdateArgs),
    /// Rotate a reader's Secure Channel key remotely (the gateway makes
    /// the key; it never leaves the gateway) and wait for the outcome.
    RotateKey(super::central_upkeep::RotateKeyArgs),
}

/// `portier central push`.
#[derive(Debug, Args)]
struct PushArgs {
    /// The gateway.
    #[arg(long)]
    gateway: GatewayId,
    /// Rules file (TOML, as for `portier snapshot build`): building, time
    /// zone, doors, door groups, schedules, access levels, and credentials.
    /// Its `gateway_id` is set to --gateway (one file can serve a campus).
    #[arg(long)]
    rules: PathBuf,
    /// More credentials from a registry export: `.csv` or `.json`.
    #[arg(long)]
    credentials: Vec<PathBuf>,
    /// More credentials from an SQL query on central's database (columns
    /// card, name, access_levels, valid_from, valid_until, blocked, …).
    #[arg(long)]
    from_sql: Option<String>,
    /// Build and sign, print what would be published, publish nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `portier central block`.
#[derive(Debug, Args)]
struct BlockArgs {
    /// The card, e.g. h10301:42:1001.
    #[arg(long)]
    card: CredentialKey,
    /// Why.
    #[arg(long, value_enum, default_value_t = Reason::Lost)]
    reason: Reason,
    /// Only these gateways (default: every gateway whose rules name the card).
    #[arg(long, conflicts_with = "all")]
    gateway: Vec<GatewayId>,
    /// Every gateway central has published rules to.
    #[arg(long)]
    all: bool,
}

/// Why a card is blocked.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Reason {
    /// Reported lost.
    Lost,
    /// Reported stolen.
    Stolen,
    /// A penalty.
    Penalty,
}

/// Waiting for a command's result.
#[derive(Debug, Args)]
pub(crate) struct WaitArgs {
    /// Wait this long for the gateway's answer, seconds (0: do not wait).
    #[arg(long, default_value_t = 30)]
    pub(crate) timeout: u64,
}

/// `alarms --follow`: LISTEN first (nothing stored meanwhile is missed),
/// then the alarm events `--since` asks for, then each alarm as its insert
/// commits, each key (gateway, journal, seq) once. A lost connection or a
/// failed query is retried after a second; then the alarm events from
/// [`CATCH_UP`] before the last one printed (by their time of happening)
/// are printed again where not yet printed.
async fn follow_alarms(
    config: CentralConfig,
    since: Option<Timestamp>,
    gateway: Option<GatewayId>,
) -> anyhow::Result<ExitCode> {
    let mut feed = Feed {
        from: since,
        last: None,
        started: now(),
        printed: std::collections::HashSet::new(),
        gateway,
    };
    loop {
        if let Err(e) = feed.follow(&config).await {
            eprintln!("portier central: alarms feed: {e}; again in 1 s");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        feed.from = Some(feed.last.unwrap_or(feed.started) - CATCH_UP);
    }
}

/// How far back (time of happening) the feed looks again after a lost
/// connection.
const CATCH_UP: SignedDuration = SignedDuration::from_mins(10);

/// The follower's state over reconnections.
struct Feed {
    /// Print alarm events from this time of happening on, at (re)connect.
    from: Option<Timestamp>,
    /// The latest time of happening printed.
    last: Option<Timestamp>,
    /// When the feed started (the catch-up's base before anything printed).
    started: Timestamp,
    /// Keys printed (cleared past 100 000).
    printed: std::collections::HashSet<(String, String, i64)>,
    gateway: Option<GatewayId>,
}

impl Feed {
    async fn follow(&mut self, config: &CentralConfig) -> anyhow::Result<()> {
        let (pg, mut notes) = db::connect_listening(&config.postgres).await?;
        pg.batch_execute("LISTEN portier_alarms").await?;
        if let Some(since) = self.from {
            for alarm in db::alarm_events(&pg, since, self.gateway.as_ref()).await? {
                self.print(alarm)?;
            }
        }
        while let Some(note) = notes.recv().await {
            if let Some(alarm) = db::announced_alarm(&pg, note.payload()).await? {
                self.print(alarm)?;
            }
        }
        anyhow::bail!("the database connection ended")
    }

    fn print(&mut self, alarm: serde_json::Value) -> anyhow::Result<()> {
        use std::io::Write;
        if self
            .gateway
            .as_ref()
            .is_some_and(|g| alarm["gateway"] != g.as_str())
        {
            return Ok(());
        }
        let key = (
            alarm["gateway"].as_str().unwrap_or_default().to_owned(),
            alarm["journal"].as_str().unwrap_or_default().to_owned(),
            alarm["seq"].as_i64().unwrap_or_default(),
        );
        if self.printed.len() > 100_000 {
            self.printed.clear();
        }
        if !self.printed.insert(key) {
            return Ok(());
        }
        if let Some(at) = alarm["at"].as_str().and_then(|t| t.parse().ok()) {
            self.last = Some(self.last.map_or(at, |l: Timestamp| l.max(at)));
        }
        println!("{alarm}");
        std::io::stdout().flush()?;
        Ok(())
    }
}

pub(crate) fn now() -> Timestamp {
    portier::clock::wall()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let seed = read_hex32(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub(crate) fn run(args: CentralArgs) -> anyhow::Result<ExitCode> {
    let config = CentralConfig::load(&args.config)?;
    let rt = runtime()?;
    match args.cmd.unwrap_or(CentralCmd::Run) {
        CentralCmd::Run => rt.block_on(serve(config)),
        CentralCmd::Migrate => rt.block_on(async {
            let mut pg = db::connect(&config.postgres).await?;
            let v = db::migrate(&mut pg).await?;
            println!("{}", serde_json::json!({"schema": v}));
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::Status { json } => rt.block_on(status(config, json)),
        CentralCmd::Readers { firmware, json } => rt.block_on(readers(config, firmware, json)),
        CentralCmd::Alarms {
            since,
            gateway,
            follow: true,
            ..
        } => rt.block_on(follow_alarms(config, since, gateway)),
        CentralCmd::Alarms {
            since,
            until,
            gateway,
            ..
        } => rt.block_on(async {
            let pg = db::connect(&config.postgres).await?;
            let until = until.unwrap_or_else(now);
            let since = match since {
                Some(s) => s,
                None => until.checked_sub(SignedDuration::from_hours(24))?,
            };
            for a in db::alarms(&pg, since, until, gateway.as_ref()).await? {
                println!("{a}");
            }
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::Muster { gateway, area } => rt.block_on(async {
            let pg = db::connect(&config.postgres).await?;
            for row in db::muster(&pg, gateway.as_ref(), area.as_deref()).await? {
                println!("{}", serde_json::to_string(&row)?);
            }
            Ok(ExitCode::SUCCESS)
        }),
        CentralCmd::Push(p) => rt.block_on(push(config, p)),
        CentralCmd::Block(b) => rt.block_on(block(config, b, false)),
        CentralCmd::Unblock(b) => rt.block_on(block(config, b, true)),
        CentralCmd::Unlock {
            gateway,
            door,
            seconds,
            wait,
        } => rt.block_on(command(
            config,
            gateway,
            RemoteAction::Unlock {
                door: door.into(),
                seconds,
            },
            wait,
        )),
        CentralCmd::Lockdown {
            gateway,
            door,
            wait,
        } => rt.block_on(command(
            config,
            gateway,
            RemoteAction::Lockdown {
                doors: door.into_iter().map(Into::into).collect(),
            },
            wait,
        )),
        CentralCmd::ReaderUpdate(args) => {
            rt.block_on(super::central_upkeep::reader_update(config, args))
        }
        CentralCmd::RotateKey(args) => rt.block_on(super::central_upkeep::rotate_key(config, args)),
        CentralCmd::Release {
            gateway,
            door,
            wait,
        } => rt.block_on(command(
            config,
            gateway,
            RemoteAction::ReleaseLockdown {
                doors: door.into_iter().map(Into::into).collect(),
            },
            wait,
        )),
    }
}

async fn serve(config: CentralConfig) -> anyhow::Result<ExitCode> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        let _ = tx.send(true);
    });
    portier::central::driver::run(config, rx).await?;
    Ok(ExitCode::SUCCESS)
}

async fn readers(
    config: CentralConfig,
    firmware: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let pg = db::connect(&config.postgres).await?;
    let rows = db::readers(&pg, firmware.as_deref()).await?;
    if json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:<10} {:>4} {:<16} {:<6} {:>5} {:>3} {:>10} {:<10} {:<7} {:<3}",
        "gateway",
        "bus",
        "addr",
        "name",
        "vendor",
        "model",
        "ver",
        "serial",
        "firmware",
        "state",
        "sc"
    );
    for r in &rows {
        let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<20} {:<10} {:>4} {:<16} {:<6} {:>5} {:>3} {:>10} {:<10} {:<7} {:<3}",
            r.gateway,
            r.bus,
            r.address,
            r.name,
            r.vendor.as_deref().unwrap_or("-"),
            opt(r.model.map(i64::from)),
            opt(r.version.map(i64::from)),
            opt(r.serial),
            r.firmware.as_deref().unwrap_or("-"),
            match (r.updating, r.online) {
                (true, _) => "update",
                (false, true) => "online",
                (false, false) => "offline",
            },
            if r.secure_channel { "yes" } else { "no" },
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(config: CentralConfig, json: bool) -> anyhow::Result<ExitCode> {
    let pg = db::connect(&config.postgres).await?;
    let fleet = db::fleet(&pg).await?;
    let t = now();
    let age = |at: Option<Timestamp>| {
        at.map(|a| {
            let s = t.duration_since(a).as_secs().max(0);
            match s {
                0..120 => format!("{s}s"),
                120..7200 => format!("{}m", s / 60),
                _ => format!("{}h", s / 3600),
            }
        })
    };
    if json {
        for g in &fleet {
            let mut v = serde_json::to_value(g)?;
            v["backlog_age_seconds"] = serde_json::json!(
                g.backlog_oldest_at
                    .map(|a| t.duration_since(a).as_secs().max(0))
            );
            v["journal_changed"] = serde_json::json!(journal_changed_recently(g, t));
            println!("{v}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<8} {:>6} {:>9} {:>9} {:>8} {:>10} {:>9}  problems",
        "gateway", "state", "since", "rules", "published", "backlog", "oldest", "seen"
    );
    for g in &fleet {
        let mut problems = Vec::new();
        if let Some(r) = &g.rules_refused {
            problems.push(format!("rules refused: {r}"));
        }
        if g.dropped_events.unwrap_or(0) > 0 {
            problems.push(format!("{} events dropped", g.dropped_events.unwrap_or(0)));
        }
        if journal_changed_recently(g, t) {
            problems.push(format!(
                "journal changed {} ago (was {}, now {}; its events waiting: `portier journal drain`)",
                age(g.journal_changed_at).unwrap_or_else(|| "-".into()),
                g.journal_previous.as_deref().map_or("-", |j| &j[..8.min(j.len())]),
                g.journal.as_deref().map_or("-", |j| &j[..8.min(j.len())]),
            ));
        }
        if g.rejected > 0 {
            problems.push(format!(
                "{} quarantined in events_rejected (last {} ago; `alarms`)",
                g.rejected,
                age(g.rejected_last_at).unwrap_or_else(|| "-".into())
            ));
        }
        let opt = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
        println!(
            "{:<24} {:<8} {:>6} {:>9} {:>9} {:>8} {:>10} {:>9}  {}",
            g.gateway,
            g.state,
            age(g.state_since).unwrap_or_else(|| "-".into()),
            opt(g.rules_version),
            opt(g.rules_published),
            opt(g.backlog),
            age(g.backlog_oldest_at).unwrap_or_else(|| "-".into()),
            age(g.last_seen).map_or("-".into(), |a| format!("{a} ago")),
            problems.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a journal change stays among a gateway's problems: the
/// `journal_changed` alarm itself stays in `alarms` for good.
const JOURNAL_CHANGE_SHOWN: i64 = 7 * 24 * 3600;

/// Whether `g` changed journals within [`JOURNAL_CHANGE_SHOWN`]: the old
/// journal may hold events central never got, until someone drains it.
fn journal_changed_recently(g: &db::FleetRow, now: Timestamp) -> bool {
    g.journal_changed_at
        .is_some_and(|at| now.duration_since(at).as_secs() < JOURNAL_CHANGE_SHOWN)
}

fn block_reason(text: &str) -> BlockReason {
    match text {
        "stolen" => BlockReason::Stolen,
        "penalty" => BlockReason::Penalty,
        _ => BlockReason::Lost,
    }
}

fn reason_text(r: BlockReason) -> &'static str {
    match r {
        BlockReason::Lost => "lost",
        BlockReason::Stolen => "stolen",
        BlockReason::Penalty => "penalty",
    }
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn push(config: CentralConfig, args: PushArgs) -> anyhow::Result<ExitCode> {
    let key = signing_key(&config.signing.key)?;
    let text = std::fs::read_to_string(&args.rules)
        .with_context(|| format!("reading {}", args.rules.display()))?;
    let mut extra = Vec::new();
    for file in &args.credentials {
        let name = file.display().to_string();
        let body = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
        match file.extension().and_then(|e| e.to_str()) {
            Some("csv") => extra.extend(import::from_csv(&name, &body)?),
            Some("json") => extra.extend(import::from_json(&name, &body)?),
            _ => bail!("{name}: credentials must be a .csv or .json file"),
        }
    }
    let mut pg = db::connect(&config.postgres).await?;
    if let Some(sql) = &args.from_sql {
        let records = db::query_records(&mut pg, sql).await?;
        extra.extend(import::records_to_credentials(
            "--from-sql query",
            records,
            1,
        )?);
    }
    let version = db::next_version(&pg, &args.gateway).await?;
    let issued = now();
    let expires = issued.checked_add(SignedDuration::from_hours(
        i64::from(config.signing.rules_valid_days) * 24,
    ))?;
    let file = args.rules.display().to_string();
    let mut snap = source::parse_rules(&file, &text, version, issued, expires)?;
    snap.gateway_id = args.gateway.to_string();
    let header = Header::new(snap.without_credentials())?;
    let mut seen: std::collections::BTreeSet<CredentialKey> =
        snap.credentials.iter().map(|c| c.key.clone()).collect();
    for c in extra {
        header
            .check_credential(&c)
            .with_context(|| format!("{file}: with the imported credentials"))?;
        if !seen.insert(c.key.clone()) {
            bail!(
                "card {} is both in {file} and in the imported credentials",
                c.key
            );
        }
        snap.credentials.push(c);
    }
    // Blocks made through central outlive any export that forgets them.
    let blocks = db::blocked_cards(&pg).await?;
    let mut kept_blocked = 0;
    for c in &mut snap.credentials {
        if let Some(reason) = blocks.get(&c.key.to_string()) {
            c.blocked = Some(block_reason(reason));
            kept_blocked += 1;
        }
    }
    let bytes = sign_snapshot(&key, &snap)?;
    let cards: Vec<String> = snap.credentials.iter().map(|c| c.key.to_string()).collect();
    let summary = serde_json::json!({
        "gateway": args.gateway.as_str(), "version": version, "building": snap.building,
        "credentials": cards.len(), "bytes": bytes.len(), "expires_at": expires.to_string(),
        "digest": digest(&bytes), "blocked_by_central": kept_blocked,
        "published": !args.dry_run,
    });
    if !args.dry_run {
        db::record_published(
            &mut pg,
            &Publication {
                gateway: &args.gateway,
                version,
                kind: "snapshot",
                base_version: None,
                building: &snap.building,
                credentials: cards.len(),
                digest: digest(&bytes),
                blob: &bytes,
                repair: false,
            },
            &cards,
        )
        .await?;
        let topic = GatewayTopics::new(&config.central.topic_root, &args.gateway).snapshot;
        publish_blobs(&config, vec![(topic, bytes, true)]).await?;
    }
    println!("{summary}");
    Ok(ExitCode::SUCCESS)
}

async fn block(config: CentralConfig, args: BlockArgs, unblock: bool) -> anyhow::Result<ExitCode> {
    let key = signing_key(&config.signing.key)?;
    let mut pg = db::connect(&config.postgres).await?;
    let card = args.card.to_string();
    let targets = if args.all {
        db::gateways_with_rules(&pg).await?
    } else if !args.gateway.is_empty() {
        args.gateway.clone()
    } else {
        db::gateways_with_card(&pg, &card).await?
    };
    if targets.is_empty() {
        bail!(
            "no gateway's rules (as published by central) name {card}: name gateways with --gateway, or use --all"
        );
    }
    let reason = match args.reason {
        Reason::Lost => BlockReason::Lost,
        Reason::Stolen => BlockReason::Stolen,
        Reason::Penalty => BlockReason::Penalty,
    };
    if unblock {
        db::remove_block(&pg, &card).await?;
    } else {
        db::record_block(&pg, &card, reason_text(reason)).await?;
    }
    let issued = now();
    let expires = issued.checked_add(SignedDuration::from_hours(
        i64::from(config.signing.rules_valid_days) * 24,
    ))?;
    let mut blobs = Vec::new();
    let mut out = Vec::new();
    for gateway in &targets {
        let Some(last) = db::last_published(&pg, gateway).await? else {
            bail!(
                "{gateway}: central never published rules to it; `portier central push --gateway {gateway} …` first"
            );
        };
        let version = db::next_version(&pg, gateway).await?;
        let delta = Delta {
            base_version: version - 1,
            version,
            issued_at: issued,
            expires_at: expires,
            gateway_id: gateway.to_string(),
            building: last.building.clone(),
            blocks: if unblock {
                Vec::new()
            } else {
                vec![Block {
                    card: args.card.clone(),
                    reason,
                }]
            },
            unblocks: if unblock {
                vec![args.card.clone()]
            } else {
                Vec::new()
            },
            upserts: Vec::new(),
            removals: Vec::new(),
        };
        let bytes = sign_delta(&key, &delta)?;
        db::record_published(
            &mut pg,
            &Publication {
                gateway,
                version,
                kind: "delta",
                base_version: Some(version - 1),
                building: &last.building,
                credentials: 1,
                digest: digest(&bytes),
                blob: &bytes,
                repair: false,
            },
            std::slice::from_ref(&card),
        )
        .await?;
        out.push(
            serde_json::json!({"gateway": gateway.as_str(), "card": card,
            "reason": reason_text(reason), "base_version": version - 1,
            "version": version}),
        );
        blobs.push((
            GatewayTopics::new(&config.central.topic_root, gateway).delta,
            bytes,
            false,
        ));
    }
    publish_blobs(&config, blobs).await?;
    for o in out {
        println!("{o}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A signed command for `gateway`, valid for `valid_seconds`, recorded in
/// the `commands` table.
pub(crate) async fn new_command(
    config: &CentralConfig,
    pg: &tokio_postgres::Client,
    gateway: &GatewayId,
    action: CommandAction,
    valid_seconds: u64,
) -> anyhow::Result<(Command, Vec<u8>)> {
    let key = signing_key(&config.signing.key)?;
    let mut r = [0u8; 8];
    portier::clock::os_entropy(&mut r);
    let issued_at = now();
    let expires_at = issued_at.checked_add(SignedDuration::from_secs(
        i64::try_from(valid_seconds).unwrap_or(300),
    ))?;
    let command = Command {
        id: hex::encode(r),
        gateway: gateway.to_string(),
        issued_at,
        expires_at,
        action,
    };
    let bytes = sign_command(&key, &command);
    db::record_command(pg, &command).await?;
    Ok((command, bytes))
}

async fn command(
    config: CentralConfig,
    gateway: GatewayId,
    action: RemoteAction,
    wait: WaitArgs,
) -> anyhow::Result<ExitCode> {
    let pg = db::connect(&config.postgres).await?;
    let valid = config.signing.command_valid_seconds;
    let (command, bytes) = new_command(&config, &pg, &gateway, action.into(), valid).await?;
    let issued_at = command.issued_at;
    let topic = GatewayTopics::new(&config.central.topic_root, &gateway).command;
    publish_blobs(&config, vec![(topic, bytes, false)]).await?;
    eprintln!(
        "{}",
        serde_json::json!({"sent": command.id, "gateway": gateway.as_str(), "action": command.action})
    );
    if wait.timeout == 0 {
        println!("{}", serde_json::json!({"command": command.id}));
        return Ok(ExitCode::SUCCESS);
    }
    // The gateway's answer comes back as an event, which the running
    // service stores: wait for it there.
    let since = issued_at.checked_sub(SignedDuration::from_mins(10))?;
    let deadline = portier::clock::timer() + Duration::from_secs(wait.timeout);
    loop {
        if let Some(e) = db::command_result(&pg, &gateway, &command.id, since).await? {
            println!("{e}");
            let ok = e["type"] == "remote_action" && e["outcome"] == "accepted";
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if portier::clock::timer() >= deadline {
            bail!(
                "no answer from {gateway} to command {} within {} s (is `portier central` running and the gateway online? see `portier central status`)",
                command.id,
                wait.timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
