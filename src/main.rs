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

/// Human-readable logs on stderr, level from `RUST_LOG` (default `info`).
/// Standard output stays free for the verbs' own output (JSON lines).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
