//! Command-line verbs. Each submodule owns one verb (or family of verbs) and
//! its arguments; `run` parses and dispatches.

mod admin;
mod central;
mod central_upkeep;
mod command;
mod demo;
mod journal;
mod keygen;
mod reader;
mod reader_life;
mod run;
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
    /// A whole simulated building on this machine: simulated readers, signed
    /// demo rules, the daemon, scripted badges, and a live log.
    Demo(demo::DemoArgs),
    /// Signed remote commands (integrator tool).
    #[command(subcommand)]
    Command(command::CommandCmd),
    /// Send a signed snapshot, delta or command to a gateway through the
    /// broker (integrator and test tool).
    Publish(command::PublishArgs),
    /// Run the gateway daemon.
    Run(run::RunArgs),
    /// Check a config file (and the key files it names); exit non-zero with
    /// file, line and key on error.
    CheckConfig(run::CheckArgs),
    /// Build, inspect, apply and query signed rule snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Admin port users and API tokens (no default password exists).
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// What the admin page shows, in the terminal.
    Status(status::StatusArgs),
    /// The central side: events into PostgreSQL (acked after commit), the
    /// fleet's status, signed rules and commands out.
    Central(central::CentralArgs),
    /// The event journal: deliver one that was moved aside.
    #[command(subcommand)]
    Journal(journal::JournalCmd),
}

/// Parse the command line and run the verb.
pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.verb {
        Verb::Reader(cmd) => reader::run(cmd),
        Verb::Keygen(args) => keygen::run(args),
        Verb::Snapshot(cmd) => snapshot::run(cmd),
        Verb::Run(args) => run::run(args),
        Verb::Demo(args) => demo::run(args),
        Verb::Command(cmd) => command::run(cmd),
        Verb::Publish(args) => command::publish(args),
        Verb::CheckConfig(args) => run::check(args),
        Verb::Admin(cmd) => admin::run(cmd),
        Verb::Status(args) => status::run(args),
        Verb::Central(args) => central::run(args),
        Verb::Journal(cmd) => journal::run(cmd),
    }
}
