//! `portier status`: what the admin page shows, in the terminal, read from
//! the admin port's JSON API.
//!
//! Trust: `--fingerprint` pins the admin certificate (the daemon journals
//! it at start), `--ca` trusts a CA file, `--config` reads both the address
//! and the certificate from the gateway's own config (on the gateway), and
//! `--insecure` trusts anything (says so). Authentication: a token
//! (`--token` or `PORTIER_ADMIN_TOKEN`), or `--user` with the password on
//! standard input or in `PORTIER_ADMIN_PASSWORD`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use portier::admin::client::{AdminClient, Auth};
use portier::admin::tls::Trust;
use portier::admin::{AdminConfig, muster_text, status_text};
use portier::status::{Occupancy, Status};

/// Arguments of `portier status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// Admin port URL.
    #[arg(long)]
    url: Option<String>,
    /// Read the URL and the certificate from this gateway config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// SHA-256 fingerprint of the admin certificate (AB:CD:… or hex).
    #[arg(long, conflicts_with_all = ["ca", "insecure"])]
    fingerprint: Option<String>,
    /// PEM file of CA certificates to trust.
    #[arg(long, conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Trust any certificate (tests on a bench only).
    #[arg(long)]
    insecure: bool,
    /// API token (else `PORTIER_ADMIN_TOKEN`).
    #[arg(long)]
    token: Option<String>,
    /// Log in as this user instead (password from `PORTIER_ADMIN_PASSWORD`
    /// or standard input).
    #[arg(long, conflicts_with = "token")]
    user: Option<String>,
    /// Print the status as JSON (the `/api/v1/status` document).
    #[arg(long)]
    json: bool,
    /// Print the muster list instead: who is inside, in which area, since
    /// when, through which door (`/api/v1/occupancy`).
    #[arg(long)]
    muster: bool,
    /// With `--muster`: only this area (its inner areas included).
    #[arg(long, requires = "muster")]
    area: Option<String>,
}

/// URL and certificate of the admin port named in a gateway config.
fn from_config(path: &PathBuf) -> anyhow::Result<(String, PathBuf)> {
    let admin = AdminConfig::from_config_file(path)?;
    let mut addr = admin.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let cert = match admin.cert {
        Some(c) => c,
        None => {
            let text = std::fs::read_to_string(path)?;
            let v: toml::Value = toml::from_str(&text)?;
            let state = v
                .get("gateway")
                .and_then(|g| g.get("state_dir"))
                .and_then(|s| s.as_str())
                .context("[gateway] state_dir")?;
            path.parent()
                .unwrap_or(std::path::Path::new("."))
                .join(state)
                .join("admin-tls/cert.pem")
        }
    };
    Ok((format!("https://{addr}"), cert))
}

pub(crate) fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut url = args.url.clone();
    let mut trust = None;
    if let Some(cfg) = &args.config {
        let (u, cert) = from_config(cfg)?;
        url.get_or_insert(u);
        let pem = std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem)
            .map(|c: rustls::pki_types::CertificateDer<'_>| c.to_vec())
            .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
        trust = Some(Trust::Fingerprint(portier::admin::tls::fingerprint(&der)));
    }
    let url = url.unwrap_or_else(|| "https://127.0.0.1:8443".to_owned());
    let trust = match (args.fingerprint, args.ca, args.insecure, trust) {
        (Some(f), _, _, _) => Trust::Fingerprint(f),
        (_, Some(ca), _, _) => Trust::CaFile(ca),
        (_, _, true, _) => {
            eprintln!("warning: --insecure: the admin certificate is not checked");
            Trust::Any
        }
        (_, _, _, Some(t)) => t,
        _ => bail!(
            "say how to trust the admin certificate: --fingerprint (journaled at daemon start), --ca, or --config on the gateway"
        ),
    };
    let token = args
        .token
        .clone()
        .or_else(|| std::env::var("PORTIER_ADMIN_TOKEN").ok());
    let auth = match (&args.user, &token) {
        (Some(_), _) => Auth::Anonymous, // logs in below
        (None, Some(t)) => Auth::Token(t.trim().to_owned()),
        (None, None) => bail!("give --token (or PORTIER_ADMIN_TOKEN) or --user"),
    };
    // A `ClientError`'s text already names its cause: print it as one
    // message, not followed by its source chain a second time.
    let mut client = AdminClient::new(&url, &trust, auth).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let muster_path = args.area.as_ref().map_or_else(
        || "/api/v1/occupancy".to_owned(),
        |a| {
            let q: String = url_escape(a);
            format!("/api/v1/occupancy?area={q}")
        },
    );
    let (status, occupancy): (Option<Status>, Option<Occupancy>) = runtime.block_on(async {
        if let Some(user) = &args.user {
            let pw = match std::env::var("PORTIER_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            client
                .login(user, &pw)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if args.muster {
            let o: Occupancy = client
                .get_json(&muster_path)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            return Ok::<_, anyhow::Error>((None, Some(o)));
        }
        let s: Status = client
            .get_json("/api/v1/status")
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((Some(s), None))
    })?;
    match (status, occupancy) {
        (_, Some(o)) if args.json => println!("{}", serde_json::to_string_pretty(&o)?),
        (_, Some(o)) => {
            println!(
                "muster list{} at {}: {} inside",
                o.area
                    .as_deref()
                    .map(|a| format!(" of {a}"))
                    .unwrap_or_default(),
                o.now,
                o.inside.len()
            );
            print!("{}", muster_text(&o.inside, &jiff::tz::TimeZone::UTC));
        }
        (Some(s), _) if args.json => println!("{}", serde_json::to_string_pretty(&s)?),
        (Some(s), _) => print!("{}", status_text(&s)),
        (None, None) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// An area name as a URL query value (names are short config words; every
/// byte outside `[A-Za-z0-9._~-]` is percent-encoded).
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'~' | b'-' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
