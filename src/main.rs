//! The `portier` command line: parses arguments and hands over to `cli`.
//! This is the only place that maps errors to process exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    init_logging();
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("portier: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to the journal under systemd, else to stderr; default level
/// `info` (`warn` for `portier demo`, whose own output is the readable
/// log). `portier run` applies the config's level after loading it.
fn init_logging() {
    let default = match std::env::args().nth(1).as_deref() {
        Some("demo") => "warn",
        _ => "info",
    };
    let control = portier::driver::logging::init(default);
    let _ = LOG_CONTROL.set(control);
}

/// The process's log control, for `portier run` (config level, SIGHUP).
pub(crate) static LOG_CONTROL: std::sync::OnceLock<portier::driver::logging::LogControl> =
    std::sync::OnceLock::new();
