//! The `portier` command line: parses arguments and hands over to `cli`.
//! This is the only place that maps errors to process exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("portier: {err:#}");
            ExitCode::FAILURE
        }
    }
}
