//! `portier keygen`: an ed25519 key pair for the central system.
//!
//! Writes `NAME.key` (the 32-byte seed as 64 hex digits, mode 0600, never
//! overwriting) and `NAME.pub` (the public key as 64 hex digits).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `portier keygen`.
#[derive(Debug, clap::Args)]
pub(crate) struct KeygenArgs {
    /// Directory to write the key pair into.
    #[arg(long)]
    out: PathBuf,
    /// Base name of the files.
    #[arg(long, default_value = "central")]
    name: String,
}

pub(crate) fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    portier::clock::os_entropy(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let key_path = args.out.join(format!("{}.key", args.name));
    let pub_path = args.out.join(format!("{}.pub", args.name));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    writeln!(f, "{}", hex::encode(seed))
        .with_context(|| format!("writing {}", key_path.display()))?;
    f.sync_all()?;
    std::fs::write(
        &pub_path,
        format!("{}\n", hex::encode(key.verifying_key().as_bytes())),
    )
    .with_context(|| format!("writing {}", pub_path.display()))?;
    println!(
        "{}",
        serde_json::json!({
            "key": key_path.display().to_string(),
            "pub": pub_path.display().to_string(),
            "key_id": portier::rules::envelope::key_id(&key.verifying_key()),
        })
    );
    Ok(ExitCode::SUCCESS)
}
