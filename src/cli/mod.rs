//! Command-line verbs. Each submodule owns one verb (or family of verbs) and
//! its arguments; `run` parses and dispatches.

mod admin;
mod keygen;
mod reader;
mod snapshot;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Portier: access-control gateway (OSDP control panel, offline decisions,
/// durable events).
#[derive(Debug, Parser)]
#[command(name = "portier", version, about)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Technician tools for one OSDP reader.
    #[command(subcommand)]
    Reader(reader::ReaderCmd),
    /// Create an ed25519 key pair for signing snapshots and commands.
    Keygen(keygen::KeygenArgs),
    /// Build, inspect, apply and query signed rule snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Admin port users and API tokens (no default password exists).
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// What the admin page shows, in the terminal.
    Status(status::StatusArgs),
}

/// Parse the command line and run the verb.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.verb {
        Verb::Reader(cmd) => reader::run(cmd),
        Verb::Keygen(args) => keygen::run(args),
        Verb::Snapshot(cmd) => snapshot::run(cmd),
        Verb::Admin(cmd) => admin::run(cmd),
        Verb::Status(args) => status::run(args),
    }
}
