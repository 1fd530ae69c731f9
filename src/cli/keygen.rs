//! `portier keygen`: an ed25519 key pair for the central system.

use std::process::ExitCode;

/// Arguments of `portier keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {}

pub(crate) fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
