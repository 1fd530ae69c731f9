//! The MQTT link to the central system over mutual TLS (rumqttc + rustls,
//! ring provider): publishes the journal through the [`Outbox`], deletes
//! events only on the central `ack`, hands snapshots, deltas and commands
//! to the gateway, and keeps a retained `status` with an `offline` last
//! will. Reconnects with exponential back-off and jitter.
//!
//! Packet size: snapshots arrive as one MQTT message; the incoming packet
//! limit is raised deliberately to `max_snapshot_mib` (default 256 MiB)
//! rather than chunking — one signed blob, verified whole, keeps the
//! "verify before anything is acted on" rule simple. The memory cost is one
//! snapshot-sized buffer while it arrives.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, QoS, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::journal::{Journal, JournalError};
use crate::uplink::wire::{self, Ack, EventBatch, Status};
use crate::uplink::{Outbox, UplinkConfig};

/// What came from central.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A signed full snapshot.
    Snapshot(Vec<u8>),
    /// A signed delta.
    Delta(Vec<u8>),
    /// A signed command.
    Command(Vec<u8>),
}

/// The link as others see it (status page, `status` topic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UplinkState {
    /// Connected to the broker now.
    pub connected: bool,
    /// Highest sequence number acknowledged centrally.
    pub acked: u64,
    /// Events kept in the journal (not yet acknowledged).
    pub backlog: u64,
    /// The oldest of them.
    pub backlog_oldest_seq: Option<u64>,
    /// When the oldest of them happened.
    pub backlog_oldest_at: Option<jiff::Timestamp>,
    /// The last connection error, if any since the last success.
    pub last_error: Option<String>,
}

/// Uplink setup failures (runtime failures are retried, not returned).
#[derive(Debug, Error)]
pub enum UplinkError {
    /// A certificate, key or CA file is unusable.
    #[error("uplink TLS: {0}")]
    Tls(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Build the rustls client config: the central CA as the only root, this
/// gateway's certificate and key for client authentication.
pub fn tls_config(cfg: &UplinkConfig) -> Result<rustls::ClientConfig, UplinkError> {
    let fail = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        UplinkError::Tls(format!("{}: {e}", what.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cfg.ca).map_err(|e| fail(&cfg.ca, &e))? {
        roots
            .add(cert.map_err(|e| fail(&cfg.ca, &e))?)
            .map_err(|e| fail(&cfg.ca, &e))?;
    }
    if roots.is_empty() {
        return Err(fail(&cfg.ca, &"no CA certificate in the file"));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert)
        .map_err(|e| fail(&cfg.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(&cfg.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| fail(&cfg.key, &e))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| UplinkError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| fail(&cfg.cert, &e))
}

/// MQTT options for a client with id `client_id` (the gateway id, or
/// `central-…` for the integrator tool).
pub fn mqtt_options(
    cfg: &UplinkConfig,
    client_id: &str,
    last_will: Option<LastWill>,
) -> Result<MqttOptions, UplinkError> {
    let mut o = MqttOptions::new(client_id, &cfg.host, cfg.port);
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
        tls_config(cfg)?,
    ))));
    o.set_keep_alive(Duration::from_secs(30));
    // A persistent session: commands published while the link is down are
    // queued by the broker and delivered (then checked for expiry).
    o.set_clean_session(false);
    o.set_max_packet_size(cfg.max_snapshot_mib << 20, 16 << 20);
    o.set_request_channel_capacity(256);
    if let Some(will) = last_will {
        o.set_last_will(will);
    }
    Ok(o)
}

/// Topic names under the prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `<prefix>/snapshot`.
    pub snapshot: String,
    /// `<prefix>/delta`.
    pub delta: String,
    /// `<prefix>/command`.
    pub command: String,
    /// `<prefix>/ack`.
    pub ack: String,
    /// `<prefix>/events`.
    pub events: String,
    /// `<prefix>/status`.
    pub status: String,
}

impl Topics {
    /// The topics of `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            snapshot: format!("{prefix}/snapshot"),
            delta: format!("{prefix}/delta"),
            command: format!("{prefix}/command"),
            ack: format!("{prefix}/ack"),
            events: format!("{prefix}/events"),
            status: format!("{prefix}/status"),
        }
    }
}

/// What the uplink task is given.
#[derive(Debug)]
pub struct UplinkHandles {
    /// Its own journal handle (reads, and deletes on central ack).
    pub journal: Journal,
    /// Changes whenever events were appended (the daemon's view).
    pub appended: watch::Receiver<u64>,
    /// Status to publish (retained); the uplink fills in its own fields.
    pub status: watch::Receiver<Status>,
    /// Snapshots, deltas and commands for the gateway.
    pub inbound: mpsc::Sender<Inbound>,
    /// The link's state.
    pub state: watch::Sender<UplinkState>,
    /// Ends the task.
    pub shutdown: watch::Receiver<bool>,
}

/// Run the link until shutdown. Connection failures are retried forever
/// with back-off; events wait in the journal meanwhile.
pub async fn run_uplink(
    cfg: UplinkConfig,
    gateway: String,
    mut h: UplinkHandles,
) -> Result<(), UplinkError> {
    let topics = Topics::new(&cfg.prefix(&gateway));
    let offline = Status {
        gateway: gateway.clone(),
        state: "offline".into(),
        ..Status::default()
    };
    let will = LastWill::new(
        &topics.status,
        wire::to_cbor(&offline),
        QoS::AtLeastOnce,
        true,
    );
    let options = mqtt_options(&cfg, &gateway, Some(will))?;
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let first_kept = h.journal.after(0, 1)?.first().map(|e| e.seq);
    let acked = first_kept.map_or_else(|| h.journal.next_seq().map(|n| n - 1), |s| Ok(s - 1))?;
    let mut outbox = Outbox::new(
        acked,
        cfg.batch,
        cfg.window,
        Duration::from_secs(cfg.resend_after_seconds.max(1)),
    );
    let mut connected = false;
    let mut failures = 0u32;
    let status_every = Duration::from_secs(cfg.status_interval_seconds.max(1));
    let mut status_due = tokio::time::Instant::now();
    update_state(&h, &outbox, connected, None)?;
    loop {
        if connected {
            if outbox.on_tick(clock::monotonic()) {
                tracing::info!(from = outbox.acked(), "no ack for a while: sending again");
            }
            pump(&client, &mut h.journal, &mut outbox, &topics, &gateway)?;
            if tokio::time::Instant::now() >= status_due {
                publish_status(&client, &h, &outbox, &topics)?;
                status_due = tokio::time::Instant::now() + status_every;
            }
        }
        tokio::select! {
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    tracing::info!(host = cfg.host, port = cfg.port, "uplink connected");
                    connected = true;
                    failures = 0;
                    outbox.on_connected(clock::monotonic());
                    subscribe(&client, &topics);
                    status_due = tokio::time::Instant::now();
                    update_state(&h, &outbox, connected, None)?;
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    incoming(&p.topic, p.payload.to_vec(), &topics, &mut h, &mut outbox).await?;
                    update_state(&h, &outbox, connected, None)?;
                }
                Ok(_) => {}
                Err(e) => {
                    connected = false;
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "uplink down");
                    update_state(&h, &outbox, connected, Some(e.to_string()))?;
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = h.shutdown.changed() => return Ok(()),
                    }
                }
            },
            _ = h.appended.changed() => {}
            _ = h.status.changed() => status_due = tokio::time::Instant::now(),
            () = tokio::time::sleep_until(status_due), if connected => {}
            () = sleep_until_opt(outbox.next_tick()), if connected => {}
            _ = h.shutdown.changed() => {
                let _ = client.try_disconnect();
                return Ok(());
            }
        }
    }
}

async fn sleep_until_opt(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// 0.5 s doubling to 60 s, times a random factor in [0.5, 1.5): gateways
/// of a campus do not reconnect in lockstep after a broker restart.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(7).saturating_sub(1));
    let base = base.min(Duration::from_secs(60));
    let mut r = [0u8; 2];
    clock::os_entropy(&mut r);
    let jitter = 0.5 + f64::from(u16::from_le_bytes(r)) / 65536.0;
    base.mul_f64(jitter)
}

fn subscribe(client: &AsyncClient, topics: &Topics) {
    for t in [
        &topics.snapshot,
        &topics.delta,
        &topics.command,
        &topics.ack,
    ] {
        if let Err(e) = client.try_subscribe(t.as_str(), QoS::AtLeastOnce) {
            tracing::error!(topic = t.as_str(), error = %e, "subscribe not queued");
        }
    }
}

/// Publish event batches while the window and the request queue allow.
fn pump(
    client: &AsyncClient,
    journal: &mut Journal,
    outbox: &mut Outbox,
    topics: &Topics,
    gateway: &str,
) -> Result<(), UplinkError> {
    while let Some((after, n)) = outbox.next_batch() {
        let events = journal.after(after, n)?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let batch = EventBatch {
            gateway: gateway.to_owned(),
            events,
        };
        match client.try_publish(
            topics.events.as_str(),
            QoS::AtLeastOnce,
            false,
            wire::to_cbor(&batch),
        ) {
            Ok(()) => outbox.on_sent(last),
            // The request queue is full: the event loop drains it; come back.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

async fn incoming(
    topic: &str,
    payload: Vec<u8>,
    topics: &Topics,
    h: &mut UplinkHandles,
    outbox: &mut Outbox,
) -> Result<(), UplinkError> {
    let inbound = if topic == topics.ack {
        match serde_cbor::from_slice::<Ack>(&payload) {
            Ok(ack) => {
                if let Some(through) = outbox.on_ack(ack.seq, clock::monotonic()) {
                    h.journal.delete_through(through)?;
                }
            }
            Err(e) => tracing::warn!(error = %e, "malformed ack ignored"),
        }
        return Ok(());
    } else if topic == topics.snapshot {
        Inbound::Snapshot(payload)
    } else if topic == topics.delta {
        Inbound::Delta(payload)
    } else if topic == topics.command {
        Inbound::Command(payload)
    } else {
        tracing::warn!(topic, "message on an unexpected topic ignored");
        return Ok(());
    };
    // An empty retained message clears the topic; nothing to apply.
    if !matches!(&inbound, Inbound::Snapshot(p) | Inbound::Delta(p) | Inbound::Command(p) if p.is_empty())
    {
        let _ = h.inbound.send(inbound).await;
    }
    Ok(())
}

fn publish_status(
    client: &AsyncClient,
    h: &UplinkHandles,
    outbox: &Outbox,
    topics: &Topics,
) -> Result<(), UplinkError> {
    let mut status = h.status.borrow().clone();
    status.state = "online".into();
    status.acked = outbox.acked();
    status.backlog = h.journal.len() as u64;
    let oldest = h.journal.after(0, 1)?;
    status.backlog_oldest_seq = oldest.first().map(|e| e.seq);
    status.backlog_oldest_at = oldest.first().map(|e| e.at);
    status.dropped_events = h.journal.dropped()?;
    let _ = client.try_publish(
        topics.status.as_str(),
        QoS::AtLeastOnce,
        true,
        wire::to_cbor(&status),
    );
    Ok(())
}

fn update_state(
    h: &UplinkHandles,
    outbox: &Outbox,
    connected: bool,
    error: Option<String>,
) -> Result<(), UplinkError> {
    let oldest = h.journal.after(0, 1)?;
    h.state.send_modify(|s| {
        s.connected = connected;
        s.acked = outbox.acked();
        s.backlog = h.journal.len() as u64;
        s.backlog_oldest_seq = oldest.first().map(|e| e.seq);
        s.backlog_oldest_at = oldest.first().map(|e| e.at);
        if connected {
            s.last_error = None;
        }
        if error.is_some() {
            s.last_error = error;
        }
    });
    Ok(())
}

/// Read the whole event loop until `what` holds or `limit` passes; for the
/// integrator tool, which publishes and leaves.
pub async fn drive_until(
    eventloop: &mut EventLoop,
    limit: Duration,
    mut what: impl FnMut(&Event) -> bool,
) -> Result<(), String> {
    tokio::time::timeout(limit, async {
        loop {
            match eventloop.poll().await {
                Ok(e) if what(&e) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| format!("no confirmation within {limit:?}"))?
}
