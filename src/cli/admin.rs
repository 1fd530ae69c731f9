//! `portier admin passwd` and `portier admin token`: the only ways to
//! create admin logins. There is no default user and no default password;
//! on first start nobody can log in until `passwd` has been run on the
//! gateway. Both write the users file named by `[admin] users_file`
//! (atomically, keeping the file's group and mode, a new one gets the
//! config file's group and 0640, so the service user can read it); the
//! running daemon re-reads it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use portier::admin::auth::{Role, TokenEntry, UserEntry, hash_password, token_hash, token_text};
use portier::admin::{AdminConfig, read_users_file, write_users_file};

/// Shortest password accepted.
const MIN_PASSWORD: usize = 10;

/// `portier admin` verbs.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdminCmd {
    /// Set (or change) a user's password and role. Reads the password from
    /// standard input (asked twice, unechoed, on a terminal).
    Passwd {
        /// Daemon config file (its `[admin] users_file` is written).
        #[arg(long)]
        config: PathBuf,
        /// User name.
        #[arg(long)]
        user: String,
        /// `viewer` (read only) or `operator` (door actions).
        #[arg(long)]
        role: Role,
    },
    /// Create (or replace) an API token and print it once; only its SHA-256
    /// is stored. Use it as `Authorization: Bearer <token>`.
    Token {
        /// Daemon config file.
        #[arg(long)]
        config: PathBuf,
        /// Token name (shown in events).
        #[arg(long)]
        name: String,
        /// `viewer` or `operator`.
        #[arg(long)]
        role: Role,
    },
    /// Remove a user or token.
    Remove {
        /// Daemon config file.
        #[arg(long)]
        config: PathBuf,
        /// User or token name.
        #[arg(long)]
        name: String,
    },
}

fn users_file(config: &Path) -> anyhow::Result<PathBuf> {
    let cfg = AdminConfig::from_config_file(config)?;
    cfg.users_file.with_context(|| {
        format!(
            "{}: [admin] has no users_file; add e.g. users_file = \"admin-users.toml\"",
            config.display()
        )
    })
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    portier::clock::os_entropy(&mut b);
    Ok(b)
}

/// Run a `stty` setting on the terminal on standard input.
fn stty(arg: &str) {
    let _ = std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .status();
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let read = |prompt: &str| -> anyhow::Result<String> {
        if tty {
            eprint!("{prompt}");
            std::io::stderr().flush()?;
            stty("-echo");
        }
        let mut line = String::new();
        let r = stdin.lock().read_line(&mut line);
        if tty {
            stty("echo");
            eprintln!();
        }
        r.context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let pw = read("New password: ")?;
    if tty && read("Again: ")? != pw {
        bail!("the passwords differ");
    }
    if pw.chars().count() < MIN_PASSWORD {
        bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    Ok(pw)
}

pub(crate) fn run(cmd: AdminCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCmd::Passwd { config, user, role } => {
            let file = users_file(&config)?;
            if user.trim().is_empty() || user.trim() != user {
                bail!("user name must be non-empty without surrounding spaces");
            }
            let pw = read_password()?;
            let hash = hash_password(&pw, &random()?).map_err(|e| anyhow::anyhow!(e))?;
            let mut users = read_users_file(&file)?;
            users.set_user(UserEntry {
                name: user.clone(),
                role,
                password_hash: hash,
            });
            write_users_file(&file, &users, Some(&config))?;
            eprintln!(
                "user {user} ({}) written to {}",
                role.as_str(),
                file.display()
            );
        }
        AdminCmd::Token { config, name, role } => {
            let file = users_file(&config)?;
            let token = token_text(&random()?);
            let mut users = read_users_file(&file)?;
            users.set_token(TokenEntry {
                name: name.clone(),
                role,
                token_sha256: token_hash(&token),
            });
            write_users_file(&file, &users, Some(&config))?;
            eprintln!(
                "token {name} ({}) written to {}; it is shown only now:",
                role.as_str(),
                file.display()
            );
            println!("{token}");
        }
        AdminCmd::Remove { config, name } => {
            let file = users_file(&config)?;
            let mut users = read_users_file(&file)?;
            let before = users.users.len() + users.tokens.len();
            users.users.retain(|u| u.name != name);
            users.tokens.retain(|t| t.name != name);
            if users.users.len() + users.tokens.len() == before {
                bail!("no user or token {name:?} in {}", file.display());
            }
            write_users_file(&file, &users, Some(&config))?;
            eprintln!("{name} removed from {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
