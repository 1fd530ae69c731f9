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

/// Human-readable logs on stderr, level from `RUST_LOG` (default `info`;
/// `warn` for `portier demo`, whose own output is the readable log).
/// Standard output stays free for the verbs' own output (JSON lines).
fn init_logging() {
    let default = match std::env::args().nth(1).as_deref() {
        Some("demo") => "warn",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
