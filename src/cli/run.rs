//! `portier run` (the daemon) and `portier check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use portier::config::Config;
use portier::driver::gateway::{self, RunOptions};
use tokio::sync::watch;

/// `portier run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The config file.
    #[arg(long)]
    config: PathBuf,
    /// Serve a local control socket (JSON lines of remote actions) at this
    /// path: a maintenance and test hook, mode 0600.
    #[arg(long)]
    control_socket: Option<PathBuf>,
}

/// `portier check-config`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The config file.
    #[arg(long)]
    config: PathBuf,
}

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    config.check()?;
    let pds: usize = config.buses.iter().map(|b| b.pds.len()).sum();
    println!(
        "{}: ok — gateway {}, building {}, {} bus(es), {} PD(s), {} door(s)",
        args.config.display(),
        config.gateway.id,
        config.gateway.building,
        config.buses.len(),
        pds,
        config.doors.len()
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    config.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (shutdown_tx, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop signal: shutting down");
            let _ = shutdown_tx.send(true);
        });
        let options = RunOptions {
            control_socket: args.control_socket,
        };
        gateway::run(config, options, shutdown, None).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
