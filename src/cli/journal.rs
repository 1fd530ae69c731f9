//! `portier journal drain`: deliver a journal that was moved aside (the
//! recovery from damaged commits, a replaced gateway, a new SD card) to
//! central beside the journal the daemon writes now
//! ([`portier::driver::drain`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use portier::config::Config;
use portier::driver::drain::{client_id, drain_journal};
use portier::journal::Journal;

/// `portier journal …`.
#[derive(Debug, Subcommand)]
pub(crate) enum JournalCmd {
    /// Send the unacknowledged events of a journal directory that was
    /// moved aside to central, under that journal's own id; exits 0 once
    /// central acknowledged all of them.
    Drain(DrainArgs),
}

/// Arguments of `portier journal drain`.
#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// The gateway's config (its `[gateway] id` and `[uplink]`).
    #[arg(long)]
    config: PathBuf,
    /// Give up (exit 1) when central has not acknowledged everything
    /// after this many seconds; run again to go on where it stopped.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The moved journal directory (e.g. `/var/lib/portier/journal.old`).
    dir: PathBuf,
}

pub(crate) fn run(cmd: JournalCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        JournalCmd::Drain(args) => drain(args),
    }
}

fn drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let Some(uplink) = config.uplink.clone() else {
        bail!(
            "{}: no [uplink] section: the gateway has no broker to send the journal to",
            args.config.display()
        );
    };
    let gateway = config.gateway.id.clone();
    let journal = Journal::open_to_drain(&args.dir)?;
    let id = journal.id();
    let waiting = journal.reader.len();
    println!(
        "journal {id} in {}: {waiting} event(s) waiting ({}), sending as gateway {gateway} (MQTT client {})",
        args.dir.display(),
        match journal.reader.oldest() {
            Some(oldest) => format!("seq {oldest}..={}", journal.reader.next_seq() - 1),
            None => "nothing".into(),
        },
        client_id(&gateway, id),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut shown = (false, u64::MAX);
    let drained = runtime.block_on(drain_journal(
        uplink,
        &gateway,
        journal,
        Duration::from_secs(args.timeout.max(1)),
        |s| {
            if (s.connected, s.backlog) != shown {
                shown = (s.connected, s.backlog);
                println!(
                    "{}: acknowledged up to {}, {} event(s) left",
                    if s.connected {
                        "connected"
                    } else {
                        "not connected"
                    },
                    s.acked,
                    s.backlog
                );
            }
        },
    ))?;
    println!(
        "journal {}: all {} event(s) acknowledged by central (up to seq {}); {} may be removed",
        drained.journal,
        drained.events,
        drained.acked,
        args.dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
