//! The local control socket: JSON lines, parsed into a typed
//! [`ControlRequest`] before anything is done. A maintenance and test hook
//! (mode 0600 in a directory only the service user reads), not a network
//! interface.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::daemon::{Control, DaemonView};
use super::inbound::{RulesBlob, apply_rules};
use crate::command::beacon::BeaconError;
use crate::journal::{JournalError, JournalReader};
use crate::osdp::PdStatus;
use crate::site::remote::{RemoteAction, RemoteError};
use crate::store::Store;

/// Control socket failures: the socket cannot be set up (stops the start),
/// or one request is not done (its text is the `error` of the JSON answer
/// on the wire; the connection carries on).
#[derive(Debug, Error)]
pub enum ControlSocketError {
    /// The socket path cannot be bound (directory missing, no access).
    #[error("binding control socket {}", path.display())]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The socket cannot be made private (mode 0600).
    #[error(transparent)]
    Permissions(std::io::Error),
    /// The line is not JSON, or not a query, apply or action request.
    #[error("bad request: {0}")]
    BadRequest(#[source] serde_json::Error),
    /// The daemon loop has ended: nobody can answer about presence.
    #[error("the daemon loop is gone")]
    DaemonGone,
    /// The daemon is shutting down: the request was not taken, or not
    /// answered.
    #[error("daemon stopping")]
    DaemonStopping,
    /// The daemon refused the door action.
    #[error(transparent)]
    Refused(RemoteError),
    /// The file to apply cannot be read by the daemon's user.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file named in the request.
        file: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The time beacon does not verify (key, signature, gateway).
    #[error("{}: {source}", file.display())]
    Beacon {
        /// The file named in the request.
        file: PathBuf,
        /// Cause.
        #[source]
        source: BeaconError,
    },
    /// The rules blob was refused or not applied.
    #[error(transparent)]
    Rules(super::inbound::ApplyError),
    /// The answer could not be put into JSON.
    #[error(transparent)]
    Json(serde_json::Error),
    /// The journal could not be read.
    #[error(transparent)]
    Journal(JournalError),
    /// `presence` is answered by the daemon loop, not by `query`.
    #[error("asked of the daemon loop (control_connection)")]
    PresenceElsewhere,
}

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

impl ControlContext {
    /// The socket's view of a running gateway.
    pub(crate) fn of(
        running: &super::running::Running,
        keys: crate::rules::TrustedKeys,
        gateway: String,
    ) -> Self {
        Self {
            control: running.control.clone(),
            store: running.store.clone(),
            view: running.view.clone(),
            journal: running.journal.clone(),
            buses: running.bus_status.clone(),
            keys,
            gateway,
        }
    }
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
    pub fn parse(line: &str) -> Result<Self, ControlSocketError> {
        let bad = ControlSocketError::BadRequest;
        let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
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
) -> Result<(), ControlSocketError> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener =
        tokio::net::UnixListener::bind(path).map_err(|source| ControlSocketError::Bind {
            path: path.to_owned(),
            source,
        })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(ControlSocketError::Permissions)?;
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
                    Some(p) => serde_json::to_value(p).map_err(ControlSocketError::Json),
                    None => Err(ControlSocketError::DaemonGone),
                }
            }
            Ok(ControlRequest::Query(q)) => query(&context, q),
            Ok(ControlRequest::Apply(a)) => apply(&context, a).await,
            Ok(ControlRequest::Action(a)) => action(&context, a).await,
        };
        let json = match answer {
            Ok(serde_json::Value::Null) => serde_json::json!({"ok": true}),
            Ok(v) => serde_json::json!({"ok": true, "result": v}),
            Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
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
) -> Result<serde_json::Value, ControlSocketError> {
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
        .map_err(|_| ControlSocketError::DaemonStopping)?;
    match result.await {
        Ok(Ok(())) => Ok(serde_json::Value::Null),
        Ok(Err(refused)) => Err(ControlSocketError::Refused(refused)),
        Err(_) => Err(ControlSocketError::DaemonStopping),
    }
}

async fn apply(
    context: &ControlContext,
    request: ApplyRequest,
) -> Result<serde_json::Value, ControlSocketError> {
    let file = &request.file;
    let bytes = tokio::fs::read(file)
        .await
        .map_err(|source| ControlSocketError::Read {
            file: file.clone(),
            source,
        })?;
    let kind = match request.apply {
        BlobKind::Snapshot => RulesBlob::Snapshot,
        BlobKind::Delta => RulesBlob::Delta,
        BlobKind::Beacon => {
            let at = crate::command::beacon::verify_beacon(&bytes, &context.keys, &context.gateway)
                .map_err(|source| ControlSocketError::Beacon {
                    file: file.clone(),
                    source,
                })?;
            context
                .control
                .send(Control::Beacon {
                    at,
                    came: crate::clock::monotonic(),
                })
                .await
                .map_err(|_| ControlSocketError::DaemonStopping)?;
            return Ok(serde_json::json!({"beacon": at}));
        }
    };
    let now = context.view.borrow().trusted_now();
    let applied = apply_rules(context.store.clone(), &context.control, kind, bytes, now)
        .await
        .map_err(ControlSocketError::Rules)?;
    serde_json::to_value(applied).map_err(ControlSocketError::Json)
}

fn query(context: &ControlContext, query: Query) -> Result<serde_json::Value, ControlSocketError> {
    let to_json =
        |r: Result<serde_json::Value, serde_json::Error>| r.map_err(ControlSocketError::Json);
    match query {
        Query::Events { after, limit } => {
            let limit = limit.min(10_000) as usize;
            let events = context
                .journal
                .after(after, limit)
                .map_err(ControlSocketError::Journal)?;
            to_json(serde_json::to_value(events))
        }
        Query::Presence => Err(ControlSocketError::PresenceElsewhere),
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
