//! `portier reader …`: probe a reader, install a key.

use std::process::ExitCode;

/// `portier reader` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum ReaderCmd {}

pub(crate) fn run(cmd: ReaderCmd) -> anyhow::Result<ExitCode> {
    match cmd {}
}
