//! `portier command sign` and `portier publish`: the integrator's tools for
//! signed remote commands and for sending signed blobs through the broker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use portier::command::{Command, sign_command};
use portier::config::Config;
use portier::door::Direction;
use portier::driver::uplink::{Topics, drive_until, mqtt_options};
use portier::site::remote::RemoteAction;
use rumqttc::{AsyncClient, Event, Incoming, QoS};

/// `portier command …`.
#[derive(Debug, Subcommand)]
pub(crate) enum CommandCmd {
    /// Write a signed remote command for one gateway.
    Sign(SignArgs),
}

/// `portier command sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// Central signing key (64 hex digits, from `portier keygen`).
    #[arg(long)]
    key: PathBuf,
    /// The gateway it is for.
    #[arg(long)]
    gateway: String,
    /// Command id (default: random). Results and refusals reference it.
    #[arg(long)]
    id: Option<String>,
    /// Valid for this many seconds from now (at most 86400).
    #[arg(long, default_value_t = 300)]
    expires_in: u64,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// What to do.
    #[command(subcommand)]
    action: ActionCmd,
}

/// The actions.
#[derive(Debug, Subcommand)]
pub(crate) enum ActionCmd {
    /// Release a door for N seconds (a revolving door: free rotation).
    Unlock {
        /// Door id.
        #[arg(long)]
        door: String,
        /// Seconds.
        #[arg(long)]
        seconds: u64,
    },
    /// Put a door in a mode for N seconds, then revert.
    Mode {
        /// Door id.
        #[arg(long)]
        door: String,
        /// card_only, unlocked, lockdown; locked, cardholders_only,
        /// free_rotation, emergency_free.
        #[arg(long)]
        mode: portier::door::StandingMode,
        /// Seconds.
        #[arg(long)]
        seconds: u64,
    },
    /// Let one person through a revolving door.
    ReleasePassage {
        /// Door id.
        #[arg(long)]
        door: String,
        /// in or out.
        #[arg(long, value_enum)]
        direction: Way,
    },
    /// Free rotation of a revolving door for N seconds.
    FreeRotation {
        /// Door id.
        #[arg(long)]
        door: String,
        /// Seconds.
        #[arg(long)]
        seconds: u64,
    },
    /// Lock down doors (all when none is named).
    Lockdown {
        /// Door ids.
        #[arg(long)]
        door: Vec<String>,
    },
    /// Lift a lockdown (all doors when none is named).
    ReleaseLockdown {
        /// Door ids.
        #[arg(long)]
        door: Vec<String>,
    },
}

/// A direction on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Way {
    /// Into the building.
    In,
    /// Out of it.
    Out,
}

impl From<ActionCmd> for RemoteAction {
    fn from(a: ActionCmd) -> Self {
        match a {
            ActionCmd::Unlock { door, seconds } => Self::Unlock {
                door: door.into(),
                seconds,
            },
            ActionCmd::Mode {
                door,
                mode,
                seconds,
            } => Self::SetMode {
                door: door.into(),
                mode,
                seconds,
            },
            ActionCmd::ReleasePassage { door, direction } => Self::ReleasePassage {
                door: door.into(),
                direction: match direction {
                    Way::In => Direction::In,
                    Way::Out => Direction::Out,
                },
            },
            ActionCmd::FreeRotation { door, seconds } => Self::FreeRotation {
                door: door.into(),
                seconds,
            },
            ActionCmd::Lockdown { door } => Self::Lockdown {
                doors: door.into_iter().map(Into::into).collect(),
            },
            ActionCmd::ReleaseLockdown { door } => Self::ReleaseLockdown {
                doors: door.into_iter().map(Into::into).collect(),
            },
        }
    }
}

pub(crate) fn run(cmd: CommandCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CommandCmd::Sign(args) => sign(args),
    }
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    if args.expires_in == 0 || args.expires_in > 86_400 {
        bail!("--expires-in must be 1..=86400 seconds");
    }
    let text = std::fs::read_to_string(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let seed = portier::config::read_hex32(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.key.display()))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let id = match args.id {
        Some(id) => id,
        None => {
            let mut r = [0u8; 8];
            portier::clock::os_entropy(&mut r);
            hex::encode(r)
        }
    };
    let issued_at = portier::driver::daemon::wall_now();
    let expires_at = issued_at.checked_add(jiff::SignedDuration::from_secs(
        i64::try_from(args.expires_in).unwrap_or(86_400),
    ))?;
    let command = Command {
        id: id.clone(),
        gateway: args.gateway,
        issued_at,
        expires_at,
        action: RemoteAction::from(args.action).into(),
    };
    let bytes = sign_command(&key, &command);
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}",
        serde_json::json!({"out": args.out.display().to_string(), "id": id,
            "gateway": command.gateway, "expires_at": expires_at.to_string(),
            "action": command.action})
    );
    Ok(ExitCode::SUCCESS)
}

/// What `publish` sends.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    /// A signed snapshot (published retained).
    Snapshot,
    /// A signed delta.
    Delta,
    /// A signed command.
    Command,
}

/// `portier publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// A config with an `[uplink]` section (broker, CA).
    #[arg(long)]
    config: PathBuf,
    /// Gateway to send to (default: the config's).
    #[arg(long)]
    gateway: Option<String>,
    /// Client certificate to publish with (default: the config's); the
    /// broker's ACL decides what it may publish.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// What the file is.
    #[arg(value_enum)]
    kind: Kind,
    /// The signed file.
    file: PathBuf,
}

pub(crate) fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let mut uplink = config
        .uplink
        .clone()
        .with_context(|| format!("{}: no [uplink] section", args.config.display()))?;
    if let (Some(cert), Some(key)) = (args.cert, args.key) {
        uplink.cert = cert;
        uplink.key = key;
    }
    let gateway = args.gateway.unwrap_or(config.gateway.id.clone());
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let topics = Topics::new(&uplink.prefix(&gateway));
    let (topic, retain) = match args.kind {
        Kind::Snapshot => (topics.snapshot, true),
        Kind::Delta => (topics.delta, false),
        Kind::Command => (topics.command, false),
    };
    let mut r = [0u8; 6];
    portier::clock::os_entropy(&mut r);
    let mut options = mqtt_options(
        &uplink,
        &format!("portier-publish-{}", hex::encode(r)),
        None,
    )?;
    options.set_clean_session(true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (client, mut eventloop) = AsyncClient::new(options, 8);
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, retain, bytes)
            .await?;
        drive_until(&mut eventloop, Duration::from_secs(30), |e| {
            matches!(e, Event::Incoming(Incoming::PubAck(_)))
        })
        .await
        .map_err(|e| anyhow::anyhow!("publishing to {topic}: {e}"))?;
        let _ = client.disconnect().await;
        println!(
            "{}",
            serde_json::json!({"published": topic, "retained": retain})
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
