//! `portier snapshot …`: build, inspect, delta, apply and decide.

use std::process::ExitCode;

/// `portier snapshot` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SnapshotCmd {}

pub(crate) fn run(cmd: SnapshotCmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
