//! The local control socket: JSON lines, parsed into a typed
//! [`ControlRequest`] before anything is done. A maintenance and test hook
//! (mode 0600 in a directory only the service user reads), not a network
//! interface.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{Control, DaemonView};
use super::inbound::{RulesBlob, apply_rules};
use crate::journal::JournalReader;
use crate::osdp::PdStatus;
use crate::site::remote::RemoteAction;
use crate::store::Store;

/// What the control socket serves.
#[derive(Clone)]
pub(crate) struct ControlContext {
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) store: Arc<Store>,
    pub(crate) view: watch::Receiver<DaemonView>,
    pub(crate) journal: Arc<JournalReader>,
    pub(crate) buses: HashMap<String, watch::Receiver<Vec<PdStatus>>>,
    /// Central's keys and this gateway's id, for time beacons.
    pub(crate) keys: crate::rules::TrustedKeys,
    pub(crate) gateway: String,
}

/// One request line, typed before anything is done with it.
#[derive(Debug)]
pub enum ControlRequest {
    /// Read something.
    Query(Query),
    /// Apply a signed rules file.
    Apply(ApplyRequest),
    /// A remote door action.
    Action(RemoteAction),
}

/// A read-only query.
#[derive(Debug, Deserialize)]
#[serde(tag = "query", rename_all = "snake_case", deny_unknown_fields)]
pub enum Query {
    /// Journal events after a sequence number.
    Events {
        /// After this sequence number.
        #[serde(default)]
        after: u64,
        /// At most this many (capped at 10 000).
        #[serde(default = "default_limit")]
        limit: u64,
    },
    /// Who is inside.
    Presence,
    /// Every bus's PDs.
    Buses,
    /// What every door is doing.
    Doors,
    /// What the gateway knows of the time (believed, confirmed, interval).
    Time,
}

fn default_limit() -> u64 {
    100
}

/// `{"apply":"snapshot"|"delta","file":PATH}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Which kind of blob.
    pub apply: BlobKind,
    /// The file, read by the daemon (its user must be able to read it).
    pub file: std::path::PathBuf,
}

/// Which kind of signed rules blob, as the socket names it.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    /// A full snapshot.
    Snapshot,
    /// A delta.
    Delta,
    /// A signed time beacon (as central publishes on `<prefix>/time`),
    /// taken as live: for a gateway without an uplink, and for tests.
    Beacon,
}

impl ControlRequest {
    /// Parse one line: a `query`, an `apply`, or else a remote action.
    pub fn parse(line: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))?;
        let bad = |e: serde_json::Error| format!("bad request: {e}");
        if v.get("query").is_some() {
            serde_json::from_value(v).map(Self::Query).map_err(bad)
        } else if v.get("apply").is_some() {
            serde_json::from_value(v).map(Self::Apply).map_err(bad)
        } else {
            serde_json::from_value(v).map(Self::Action).map_err(bad)
        }
    }
}

/// The local control socket: one JSON request per line in, one JSON answer
/// per line out. A request is a [`RemoteAction`] (`{"action":"unlock",…}`
/// → `{"ok":true}` or `{"ok":false,"error":"…"}`) or a query:
/// `{"query":"events","after":N,"limit":M}`, `{"query":"presence"}`,
/// `{"query":"buses"}`, `{"query":"doors"}`; or a rules file to apply:
/// `{"apply":"snapshot","file":PATH}`. Mode 0600 in a directory only the service user
/// reads: a maintenance and test hook, not a network interface.
pub(crate) fn serve_control_socket(
    path: &Path,
    context: ControlContext,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    tokio::spawn(control_connection(stream, context.clone()));
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(())
}

async fn control_connection(stream: tokio::net::UnixStream, context: ControlContext) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match ControlRequest::parse(&line) {
            Err(e) => Err(e),
            Ok(ControlRequest::Query(Query::Presence)) => {
                match crate::driver::daemon::ask_presence(&context.control).await {
                    Some(p) => serde_json::to_value(p).map_err(|e| e.to_string()),
                    None => Err("the daemon loop is gone".into()),
                }
            }
            Ok(ControlRequest::Query(q)) => query(&context, q),
            Ok(ControlRequest::Apply(a)) => apply(&context, a).await,
            Ok(ControlRequest::Action(a)) => action(&context, a).await,
        };
        let json = match answer {
            Ok(serde_json::Value::Null) => serde_json::json!({"ok": true}),
            Ok(v) => serde_json::json!({"ok": true, "result": v}),
            Err(e) => serde_json::json!({"ok": false, "error": e}),
        };
        if write
            .write_all(format!("{json}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn action(
    context: &ControlContext,
    action: RemoteAction,
) -> Result<serde_json::Value, String> {
    let (reply, result) = oneshot::channel();
    context
        .control
        .send(Control::Remote {
            source: "control-socket".into(),
            command: None,
            action,
            reply: Some(reply),
        })
        .await
        .map_err(|_| "daemon stopping".to_owned())?;
    match result.await {
        Ok(Ok(())) => Ok(serde_json::Value::Null),
        Ok(Err(refused)) => Err(refused.to_string()),
        Err(_) => Err("daemon stopping".to_owned()),
    }
}

async fn apply(
    context: &ControlContext,
    request: ApplyRequest,
) -> Result<serde_json::Value, String> {
    let file = request.file.display().to_string();
    let bytes = tokio::fs::read(&request.file)
        .await
        .map_err(|e| format!("{file}: {e}"))?;
    let kind = match request.apply {
        BlobKind::Snapshot => RulesBlob::Snapshot,
        BlobKind::Delta => RulesBlob::Delta,
        BlobKind::Beacon => {
            let at = crate::command::beacon::verify_beacon(&bytes, &context.keys, &context.gateway)
                .map_err(|e| format!("{file}: {e}"))?;
            context
                .control
                .send(Control::Beacon {
                    at,
                    came: crate::clock::monotonic(),
                })
                .await
                .map_err(|_| "daemon stopping".to_owned())?;
            return Ok(serde_json::json!({"beacon": at}));
        }
    };
    let now = context.view.borrow().trusted_now();
    let applied = apply_rules(context.store.clone(), &context.control, kind, bytes, now).await?;
    serde_json::to_value(applied).map_err(|e| e.to_string())
}

fn query(context: &ControlContext, query: Query) -> Result<serde_json::Value, String> {
    let to_json = |r: Result<serde_json::Value, serde_json::Error>| r.map_err(|e| e.to_string());
    match query {
        Query::Events { after, limit } => {
            let limit = limit.min(10_000) as usize;
            let events = context
                .journal
                .after(after, limit)
                .map_err(|e| e.to_string())?;
            to_json(serde_json::to_value(events))
        }
        Query::Presence => Err("asked of the daemon loop (control_connection)".into()),
        Query::Doors => to_json(serde_json::to_value(&context.view.borrow().doors)),
        Query::Time => to_json(serde_json::to_value(&context.view.borrow().time)),
        Query::Buses => {
            let mut buses = serde_json::Map::new();
            for (name, status) in &context.buses {
                let pds: Vec<serde_json::Value> = status
                    .borrow()
                    .iter()
                    .map(|p| serde_json::json!({"address": p.address, "online": p.online, "secure": p.secure}))
                    .collect();
                buses.insert(name.clone(), pds.into());
            }
            Ok(buses.into())
        }
    }
}
