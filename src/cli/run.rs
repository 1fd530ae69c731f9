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
    apply_log_level(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime
        .block_on(async move {
            let (shutdown_tx, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                tracing::info!("stop signal: shutting down");
                let _ = shutdown_tx.send(true);
            });
            let options = RunOptions {
                control_socket: args.control_socket,
            };
            let (started_tx, started) = tokio::sync::oneshot::channel::<gateway::Running>();
            let path = args.config.clone();
            let running_config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = started.await {
                    reload_on_hangup(path, running_config, running.control).await;
                }
            });
            gateway::run(config, options, shutdown, Some(started_tx))
                .await
                .map_err(anyhow::Error::from)
        })
        .map_err(with_fix)?;
    Ok(ExitCode::SUCCESS)
}

/// A start-up fault that stops the daemon names its file (the error chain
/// does); add what to do about the common causes, for the journal.
fn with_fix(e: anyhow::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    // The serial crate's errors are not `io::Error`s: read the words too.
    let root = e.root_cause().to_string();
    let io = e
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind)
        .next()
        .or_else(|| {
            [
                ("Permission denied", ErrorKind::PermissionDenied),
                ("No such file or directory", ErrorKind::NotFound),
            ]
            .into_iter()
            .find_map(|(words, kind)| root.contains(words).then_some(kind))
        });
    let serial = e.chain().any(|c| c.to_string().contains("opening /dev/"));
    let fix = match io {
        Some(ErrorKind::PermissionDenied) if serial => {
            "the service user cannot open the serial device: add it to the device's group \
             (adduser portier dialout), then restart"
        }
        Some(ErrorKind::PermissionDenied) => {
            "the service user (portier) cannot use the path named here: give it access \
             (state directory: chown -R portier:portier DIR; a file it reads: \
             chgrp portier FILE; chmod 0640 FILE), then restart"
        }
        Some(ErrorKind::NotFound) => {
            "a file or device named here does not exist: check the path in the config \
             (or plug the adapter in); systemd retries every few seconds"
        }
        Some(ErrorKind::AddrInUse) => "another process holds that address: stop it or change it",
        _ => return e,
    };
    e.context(format!("not started ({fix})"))
}

fn apply_log_level(config: &Config) {
    if let (Some(level), Some(control)) = (&config.log.level, crate::LOG_CONTROL.get())
        && let Err(e) = control.set_level(level.get_ref())
    {
        tracing::info!(reason = %e, "log level from the config not applied");
    }
}

/// SIGHUP: re-read the config; apply what is safe in place (log level,
/// reader feedback) and say what needs a restart. A config that does not
/// load is refused and the running one stays.
async fn reload_on_hangup(
    path: PathBuf,
    mut current: Config,
    control: tokio::sync::mpsc::Sender<portier::driver::daemon::Control>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangup.recv().await.is_some() {
        let new = match Config::load(&path).and_then(|c| c.check().map(|()| c)) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the running config stays");
                continue;
            }
        };
        apply_log_level(&new);
        let _ = control
            .send(portier::driver::daemon::Control::SetFeedback(
                new.feedback_table(),
            ))
            .await;
        let restart = new.changes_needing_restart(&current);
        if restart.is_empty() {
            tracing::info!("config reloaded (log level, reader feedback)");
        } else {
            tracing::warn!(
                sections = restart.join(", "),
                "config reloaded: log level and reader feedback applied; changes to these sections need a restart (systemctl restart portier)"
            );
        }
        current = new;
    }
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
