//! The MQTT link to the central system over mutual TLS (rumqttc + rustls,
//! ring provider): publishes the journal through the [`Outbox`], deletes
//! events only on the central `ack`, hands snapshots, deltas and commands
//! to the gateway, and keeps a retained `status` with an `offline` last
//! will. Reconnects with exponential back-off and jitter; [`run_uplink`]
//! supervises the link task and restarts it (with back-off) if it ends or
//! panics.
//!
//! Nothing from the broker can wedge it:
//! - inbound QoS 1 messages are acknowledged to the broker (manual acks)
//!   only once applied or refused ([`Delivered::done`]): a crash in between
//!   gets the message again (persistent session);
//! - rules (snapshot, delta) and commands go to separate lanes: a 1 M
//!   credential snapshot being verified and applied does not hold up a
//!   lockdown, and the link never waits for either lane (both are
//!   unbounded channels; what they hold is bounded by the broker, which
//!   sends no more unacknowledged QoS 1 messages than its in-flight limit,
//!   Mosquitto's `max_inflight_messages`, 20 by default);
//! - a message larger than its topic allows is refused with an
//!   `uplink_message_refused` alarm;
//! - an impossible ack is an `ack_out_of_range` alarm, never a deletion;
//! - an undecodable journal record is replaced on the wire by a
//!   `journal_record_skipped` event with its sequence number (and the same
//!   alarm is journaled), so central's contiguous ack moves past it.
//!
//! Packet size: snapshots arrive as one MQTT message; the incoming packet
//! limit is raised deliberately to `max_snapshot_mib` (default 256 MiB)
//! rather than chunking — one signed blob, verified whole, keeps the
//! "verify before anything is acted on" rule simple. The memory cost is one
//! snapshot-sized buffer while it arrives. rumqttc's limit is connection
//! wide (a larger packet drops the connection), so the smaller limits of
//! the other topics (`max_delta_kib`, 64 KiB for acks and commands) are
//! checked per message after receipt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, LastWill, Publish, QoS};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::event::EventKind;
use crate::journal::{JournalAcker, JournalError, JournalReader, Record};
pub use crate::mqtt::{drive_until, mqtt_options};
use crate::uplink::outbox::{Input, Output};
use crate::uplink::wire::{self, Ack, Status};
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
    /// A reader firmware file ([`wire::FirmwareFile`]), unsigned.
    Firmware(Vec<u8>),
    /// A signed time beacon; `live` unless the broker replayed it as the
    /// retained message (then it only bounds "now" from below).
    Time {
        /// The signed blob.
        bytes: Vec<u8>,
        /// Sent just now by central, not a retained copy.
        live: bool,
        /// When it arrived (monotonic).
        came: std::time::Instant,
    },
}

/// A message from central and its broker receipt. Call
/// [`Delivered::done`] once it is applied or refused durably: until then
/// the broker keeps it and delivers it again after a reconnect. Dropping it
/// without `done` (a panic while applying) leaves it to be redelivered.
#[derive(Debug)]
pub struct Delivered {
    /// The message.
    pub inbound: Inbound,
    receipt: Receipt,
}

/// The broker's receipt for one inbound message: its packet id, and the
/// client to acknowledge it with.
#[derive(Debug)]
pub struct Receipt {
    client: AsyncClient,
    /// The broker's packet id and QoS, without the payload.
    publish: Publish,
}

impl Receipt {
    /// Acknowledge to the broker: applied or refused for good. If the link
    /// went down meanwhile this does nothing and the message comes again
    /// (rules are idempotent by version, commands by id).
    pub async fn done(self) {
        if let Err(e) = self.client.ack(&self.publish).await {
            tracing::debug!(error = %e, "inbound ack not sent; the broker will deliver again");
        }
    }
}

impl Delivered {
    /// The message and its receipt, to apply the one (without copying a
    /// snapshot) and then acknowledge with the other.
    pub fn into_parts(self) -> (Inbound, Receipt) {
        (self.inbound, self.receipt)
    }

    /// Acknowledge to the broker (see [`Receipt::done`]).
    pub async fn done(self) {
        self.receipt.done().await;
    }
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
    /// Turns of the link loop (it turns at least every [`HEARTBEAT`],
    /// connected or not); the watchdog counts a change as progress.
    pub heartbeat: u64,
    /// Times the link task was restarted after it ended or panicked.
    pub restarts: u64,
}

/// The link loop turns at least this often.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// Uplink setup failures (runtime failures are retried, not returned).
#[derive(Debug, Error)]
pub enum UplinkError {
    /// A certificate, key or CA file is unusable.
    #[error("uplink TLS: {0}")]
    Tls(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The MQTT client setup ([`crate::mqtt`]).
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
}

/// Build the rustls client config (see [`crate::uplink::tls`]).
pub fn tls_config(cfg: &UplinkConfig) -> Result<rustls::ClientConfig, UplinkError> {
    crate::uplink::tls::client_config(cfg).map_err(|e| UplinkError::Tls(e.to_string()))
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
    /// `<prefix>/urgent`: urgent events again, ahead of the backlog.
    pub urgent: String,
    /// `<prefix>/status`.
    pub status: String,
    /// `<prefix>/time`.
    pub time: String,
    /// `<prefix>/firmware`: reader firmware files for `reader_update`
    /// commands.
    pub firmware: String,
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
            urgent: format!("{prefix}/urgent"),
            status: format!("{prefix}/status"),
            time: format!("{prefix}/time"),
            firmware: format!("{prefix}/firmware"),
        }
    }
}

/// What the uplink task is given.
#[derive(Debug)]
pub struct UplinkHandles {
    /// Reads the journal (what to send, the backlog for the status).
    pub journal: JournalReader,
    /// Deletes what central acknowledged.
    pub acker: JournalAcker,
    /// Changes whenever events were appended (the daemon's view).
    pub appended: watch::Receiver<u64>,
    /// The sequence numbers of the latest urgent events (duress, a fire
    /// alarm going off): published at once, before the backlog, besides
    /// going out again in turn.
    pub urgent: watch::Receiver<Vec<u64>>,
    /// Status to publish (retained); the uplink fills in its own fields.
    pub status: watch::Receiver<Status>,
    /// Snapshots and deltas for the gateway (the rules lane).
    pub rules: mpsc::UnboundedSender<Delivered>,
    /// Commands for the gateway (their own lane: never behind a snapshot).
    pub commands: mpsc::UnboundedSender<Delivered>,
    /// Alarms for the journal (the uplink does not write it: the daemon
    /// is its one writer).
    pub alarms: mpsc::UnboundedSender<EventKind>,
    /// The link's state.
    pub state: watch::Sender<UplinkState>,
    /// Ends the task.
    pub shutdown: watch::Receiver<bool>,
}

/// Run the link until shutdown, supervised: the link task is restarted
/// with back-off (1 s doubling to 60 s) when it ends with an error or
/// panics. Connection failures inside it are retried forever with their
/// own back-off; events wait in the journal meanwhile. Returns an error
/// only for a configuration that can never work (TLS files).
pub async fn run_uplink(
    cfg: UplinkConfig,
    gateway: String,
    handles: UplinkHandles,
) -> Result<(), UplinkError> {
    // Fail early on what a restart cannot fix.
    tls_config(&cfg)?;
    let mut shutdown = handles.shutdown.clone();
    let slot = Arc::new(Mutex::new(Some(handles)));
    let mut restarts = 0u32;
    loop {
        let Some(handles) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        let guard = Lent {
            slot: slot.clone(),
            handles: Some(handles),
        };
        let (cfg, gateway) = (cfg.clone(), gateway.clone());
        let started = clock::monotonic();
        let task = tokio::spawn(async move {
            let mut guard = guard;
            let h = guard.handles.as_mut().expect("lent until dropped");
            link(&cfg, &gateway, h).await
        });
        match task.await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => tracing::error!(error = %e, "uplink task failed; restarting"),
            Err(e) => tracing::error!(error = %e, "uplink task panicked; restarting"),
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        if clock::monotonic().saturating_duration_since(started) > Duration::from_secs(300) {
            restarts = 0;
        }
        restarts = restarts.saturating_add(1);
        if let Some(h) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.state.send_modify(|s| {
                s.connected = false;
                s.restarts += 1;
            });
        }
        let wait = Duration::from_secs(1 << restarts.min(7).saturating_sub(1))
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// The handles lent to one run of the link; given back when the run ends,
/// also by a panic (dropped while unwinding).
struct Lent {
    slot: Arc<Mutex<Option<UplinkHandles>>>,
    handles: Option<UplinkHandles>,
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(h) = self.handles.take() {
            *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
        }
    }
}

/// Per-topic payload limits, bytes.
#[derive(Debug, Clone, Copy)]
struct Limits {
    snapshot: usize,
    delta: usize,
    firmware: usize,
    small: usize,
}

impl Limits {
    fn new(cfg: &UplinkConfig) -> Self {
        Self {
            snapshot: cfg.max_snapshot_mib << 20,
            delta: cfg.max_delta_kib << 10,
            firmware: cfg.max_firmware_bytes() + (64 << 10),
            small: wire::MAX_SMALL_MESSAGE,
        }
    }
}

/// Whose link it is: the daemon's, or a drain's of a journal moved aside
/// (`portier journal drain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// The gateway daemon: its client id, a last will, a persistent
    /// session, every inbound topic, the retained status.
    Gateway,
    /// A drain: its own client id (the daemon may be connected at the
    /// same time), a clean session (nothing queues for it after it
    /// leaves), only the `ack` topic, no status and no last will (the
    /// gateway's retained status is the daemon's).
    Drain {
        /// The MQTT client id.
        client_id: String,
    },
}

/// One run of the link.
async fn link(cfg: &UplinkConfig, gateway: &str, h: &mut UplinkHandles) -> Result<(), UplinkError> {
    link_as(cfg, gateway, &Role::Gateway, h).await
}

/// One run of the link in `role`.
pub(crate) async fn link_as(
    cfg: &UplinkConfig,
    gateway: &str,
    role: &Role,
    h: &mut UplinkHandles,
) -> Result<(), UplinkError> {
    let topics = Topics::new(&cfg.prefix(gateway));
    let limits = Limits::new(cfg);
    let offline = Status {
        gateway: gateway.to_owned(),
        state: crate::uplink::wire::LinkState::Offline,
        ..Status::default()
    };
    let will = LastWill::new(
        &topics.status,
        wire::to_cbor(&offline),
        QoS::AtLeastOnce,
        true,
    );
    let mut options = match role {
        Role::Gateway => mqtt_options(cfg, gateway, Some(will))?,
        Role::Drain { client_id } => {
            let mut o = mqtt_options(cfg, client_id, None)?;
            o.set_clean_session(true);
            o
        }
    };
    // Inbound messages are acknowledged once applied, not on receipt.
    options.set_manual_acks(true);
    options.set_inflight(100);
    // A short request queue: the backlog's batches wait in the journal,
    // not in front of an urgent event (`pump_urgent`) in rumqttc's queue.
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let mut outbox = Outbox::new(
        h.journal.acked(),
        h.journal.next_seq().saturating_sub(1),
        cfg.batch,
        cfg.window,
        Duration::from_secs(cfg.resend_after_seconds.max(1)),
    )
    .for_journal(h.journal.id());
    let mut link = Link {
        client,
        topics,
        drain: *role != Role::Gateway,
        gateway: gateway.to_owned(),
        batch_bytes: cfg.batch_bytes(),
        connected: false,
        pending_acks: Vec::new(),
        skipped: std::collections::BTreeSet::new(),
        urgent_sent: std::collections::BTreeSet::new(),
    };
    let mut failures = 0u32;
    let mut reconnect_at: Option<tokio::time::Instant> = None;
    let status_every = Duration::from_secs(cfg.status_interval_seconds.max(1));
    let mut status_due = crate::clock::timer();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    update_state(h, &outbox, &link, None)?;
    loop {
        link.retry_acks();
        if link.connected {
            let now = clock::monotonic();
            if outbox.poll_timeout().is_some_and(|t| t <= now) {
                outbox.handle(now, Input::Timeout);
            }
            drain_outputs(h, &mut outbox, &link)?;
            link.pump(h, &mut outbox)?;
            if crate::clock::timer() >= status_due {
                link.publish_status(h, &outbox)?;
                status_due = crate::clock::timer() + status_every;
            }
        }
        let may_poll = reconnect_at.is_none_or(|t| t <= crate::clock::timer());
        tokio::select! {
            event = eventloop.poll(), if may_poll => match event {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    tracing::info!(host = cfg.host, port = cfg.port, "uplink connected");
                    link.connected = true;
                    failures = 0;
                    reconnect_at = None;
                    // Receipts of the last connection mean nothing now.
                    link.pending_acks.clear();
                    link.urgent_sent.clear();
                    // rumqttc would replay the event batches that were in
                    // flight when the link dropped, interleaved with the
                    // outbox's resend from the last ack: first copies would
                    // reach central out of order. The outbox resends them
                    // all, in order, so the replays are dropped here (before
                    // rumqttc sends any of them after this CONNACK).
                    let events = link.topics.events.clone();
                    eventloop.pending.retain(|r| {
                        !matches!(r, rumqttc::Request::Publish(p) if p.topic == events)
                    });
                    outbox.handle(clock::monotonic(), Input::Connected);
                    link.subscribe();
                    status_due = crate::clock::timer();
                    update_state(h, &outbox, &link, None)?;
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    link.incoming(p, &limits, h, &mut outbox);
                    drain_outputs(h, &mut outbox, &link)?;
                    update_state(h, &outbox, &link, None)?;
                }
                Ok(_) => {}
                Err(e) => {
                    link.connected = false;
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "uplink down");
                    reconnect_at = Some(crate::clock::timer() + wait);
                    update_state(h, &outbox, &link, Some(e.to_string()))?;
                }
            },
            () = sleep_until_opt(reconnect_at), if !may_poll => {}
            _ = h.appended.changed() => {}
            Ok(()) = h.urgent.changed() => {}
            _ = h.status.changed() => status_due = crate::clock::timer(),
            () = tokio::time::sleep_until(status_due), if link.connected => {}
            () = sleep_until_opt(outbox.poll_timeout().map(Into::into)), if link.connected => {}
            _ = heartbeat.tick() => h.state.send_modify(|s| s.heartbeat = s.heartbeat.wrapping_add(1)),
            _ = h.shutdown.changed() => {
                let _ = link.client.try_disconnect();
                return Ok(());
            }
        }
    }
}

/// rumqttc's request queue (publications not yet handed to its event
/// loop): what an urgent event may find ahead of it, besides the in-flight
/// window.
const REQUEST_QUEUE: usize = 16;

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
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

/// Carry out what the outbox decided.
fn drain_outputs(
    h: &mut UplinkHandles,
    outbox: &mut Outbox,
    link: &Link,
) -> Result<(), UplinkError> {
    while let Some(output) = outbox.poll_output() {
        match output {
            Output::Delete { through } => {
                h.acker.delete_through(through)?;
            }
            Output::AckOutOfRange { acked, sent } => {
                tracing::error!(
                    acked,
                    sent,
                    gateway = link.gateway,
                    "central acknowledged beyond what was sent; nothing deleted"
                );
                let _ = h.alarms.send(EventKind::AckOutOfRange { acked, sent });
            }
            Output::Rewound { from } => {
                tracing::info!(from, "no ack for a while: sending again");
            }
        }
    }
    Ok(())
}

/// Where an inbound message goes, and how it is wrapped (`None`: an ack,
/// handled here).
type Lane<'a> = Option<(
    &'a mpsc::UnboundedSender<Delivered>,
    &'a dyn Fn(Vec<u8>) -> Inbound,
)>;

/// One connection's client and bookkeeping.
struct Link {
    client: AsyncClient,
    topics: Topics,
    /// A drain's link ([`Role::Drain`]): acks only, no status.
    drain: bool,
    gateway: String,
    /// Bytes of events per message, at most (one event always goes).
    batch_bytes: usize,
    connected: bool,
    /// Broker receipts (for acks and oversized messages) that did not fit
    /// in the request queue yet.
    pending_acks: Vec<Publish>,
    /// Undecodable records already reported (pruned as acks pass them).
    skipped: std::collections::BTreeSet<u64>,
    /// Urgent events published ahead on this connection.
    urgent_sent: std::collections::BTreeSet<u64>,
}

impl Link {
    fn subscribe(&self) {
        if self.drain {
            if let Err(e) = self
                .client
                .try_subscribe(&self.topics.ack, QoS::AtLeastOnce)
            {
                tracing::error!(topic = self.topics.ack, error = %e, "subscribe not queued");
            }
            return;
        }
        for t in [
            &self.topics.snapshot,
            &self.topics.delta,
            &self.topics.command,
            &self.topics.ack,
            &self.topics.time,
            &self.topics.firmware,
        ] {
            if let Err(e) = self.client.try_subscribe(t.as_str(), QoS::AtLeastOnce) {
                tracing::error!(topic = t.as_str(), error = %e, "subscribe not queued");
            }
        }
    }

    /// Acknowledge to the broker now or, if the request queue is full,
    /// on a later turn of the loop.
    fn ack_broker(&mut self, receipt: Publish) {
        if let Err(e) = self.client.try_ack(&receipt) {
            tracing::debug!(pkid = receipt.pkid, error = %e, "broker ack deferred");
            self.pending_acks.push(receipt);
        }
    }

    fn retry_acks(&mut self) {
        let pending = std::mem::take(&mut self.pending_acks);
        for receipt in pending {
            self.ack_broker(receipt);
        }
    }

    /// Publish event batches while the window and the request queue allow.
    /// Records go out as stored (no decode and re-encode), each checked to
    /// decode first; an undecodable one is replaced by a
    /// `journal_record_skipped` event with its sequence number.
    fn pump(&mut self, h: &UplinkHandles, outbox: &mut Outbox) -> Result<(), UplinkError> {
        let acked = outbox.acked();
        self.skipped = self.skipped.split_off(&acked.saturating_add(1));
        self.pump_urgent(h, outbox)?;
        while let Some((after, n)) = outbox.next_batch() {
            let records = h.journal.records_within(after, n, self.batch_bytes)?;
            let mut checked: Vec<std::borrow::Cow<'_, [u8]>> =
                records.iter().map(|r| self.checked(r, h)).collect();
            // Bounded in bytes as well as in count: the read stops at the
            // record that reaches the limit, which waits for the next batch.
            let mut bytes = 0usize;
            let fits = checked
                .iter()
                .position(|c| {
                    bytes = bytes.saturating_add(c.len());
                    bytes > self.batch_bytes
                })
                .unwrap_or(checked.len())
                .max(1);
            checked.truncate(fits);
            let Some(last) = records.get(checked.len().wrapping_sub(1)).map(|r| r.seq) else {
                return Ok(());
            };
            let payload = wire::event_batch_cbor(
                &self.gateway,
                outbox.journal(),
                checked.iter().map(|c| c.as_ref()),
            );
            match self.client.try_publish(
                self.topics.events.as_str(),
                QoS::AtLeastOnce,
                false,
                payload,
            ) {
                Ok(()) => outbox.handle(clock::monotonic(), Input::Sent { last }),
                // The request queue is full: the event loop drains it; come back.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Urgent events not yet sent in turn go out first, each as a batch of
    /// its own on `<prefix>/urgent`, once per connection: central reads
    /// that topic on a connection of its own, so the alarm does not queue
    /// behind the backlog at the broker or in central's ingest. The outbox
    /// does not count them: they go again in turn on `events`, which is
    /// what is acknowledged and kept.
    fn pump_urgent(&mut self, h: &UplinkHandles, outbox: &Outbox) -> Result<(), UplinkError> {
        if self.drain {
            return Ok(());
        }
        let floor = outbox.sent().max(outbox.acked());
        self.urgent_sent = self.urgent_sent.split_off(&floor.saturating_add(1));
        let due: Vec<u64> = h
            .urgent
            .borrow()
            .iter()
            .copied()
            .filter(|&seq| seq > floor && !self.urgent_sent.contains(&seq))
            .collect();
        for seq in due {
            let records = h.journal.records_within(seq - 1, 1, self.batch_bytes)?;
            let Some(record) = records.first().filter(|r| r.seq == seq) else {
                continue;
            };
            let checked = self.checked(record, h);
            let payload = wire::event_batch_cbor(
                &self.gateway,
                outbox.journal(),
                std::iter::once(checked.as_ref()),
            );
            match self.client.try_publish(
                self.topics.urgent.as_str(),
                QoS::AtLeastOnce,
                false,
                payload,
            ) {
                Ok(()) => {
                    tracing::info!(seq, "urgent event published ahead of the backlog");
                    self.urgent_sent.insert(seq);
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    fn checked<'r>(&mut self, r: &'r Record, h: &UplinkHandles) -> std::borrow::Cow<'r, [u8]> {
        match r.decode() {
            Ok(_) if r.bytes.len() <= crate::journal::MAX_EVENT_BYTES => {
                std::borrow::Cow::Borrowed(r.bytes.as_ref())
            }
            // Written by an earlier version without the caps: sent with
            // its texts capped, as it would be written today.
            Ok(e) => std::borrow::Cow::Owned(wire::to_cbor(&crate::event::Event {
                kind: e.kind.bounded(),
                ..e
            })),
            Err(e) => {
                let error = match &e {
                    JournalError::Corrupt { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                let kind = EventKind::JournalRecordSkipped {
                    record: r.seq,
                    error: error.clone(),
                };
                if self.skipped.insert(r.seq) {
                    tracing::error!(seq = r.seq, error, "undecodable journal record skipped");
                    let _ = h.alarms.send(kind.clone());
                }
                let stand_in = crate::event::Event {
                    seq: r.seq,
                    at: crate::driver::daemon::wall_now(),
                    kind,
                };
                std::borrow::Cow::Owned(wire::to_cbor(&stand_in))
            }
        }
    }

    /// A message from the broker: acks are applied here; rules and
    /// commands go to their lanes with the receipt; whatever is refused
    /// here (too large, unknown topic, empty) is acknowledged at once.
    fn incoming(
        &mut self,
        p: Publish,
        limits: &Limits,
        h: &mut UplinkHandles,
        outbox: &mut Outbox,
    ) {
        let receipt = Publish {
            payload: Default::default(),
            ..p.clone()
        };
        let t = &self.topics;
        let came = clock::monotonic();
        let time = |bytes| Inbound::Time {
            bytes,
            live: !p.retain,
            came,
        };
        let (limit, lane): (usize, Lane<'_>) = if p.topic == t.ack {
            (limits.small, None)
        } else if p.topic == t.time {
            // The commands' lane: a beacon must not wait behind a snapshot.
            (limits.small, Some((&h.commands, &time)))
        } else if p.topic == t.command {
            (limits.small, Some((&h.commands, &Inbound::Command)))
        } else if p.topic == t.delta {
            (limits.delta, Some((&h.rules, &Inbound::Delta)))
        } else if p.topic == t.firmware {
            // The big-messages lane: a file must not wait behind nor hold
            // up a lockdown.
            (limits.firmware, Some((&h.rules, &Inbound::Firmware)))
        } else if p.topic == t.snapshot {
            (limits.snapshot, Some((&h.rules, &Inbound::Snapshot)))
        } else {
            tracing::warn!(topic = p.topic, "message on an unexpected topic ignored");
            self.ack_broker(receipt);
            return;
        };
        if p.payload.len() > limit {
            tracing::error!(
                topic = p.topic,
                bytes = p.payload.len(),
                limit,
                "oversized message refused"
            );
            let _ = h.alarms.send(EventKind::UplinkMessageRefused {
                topic: p.topic.clone(),
                bytes: p.payload.len() as u64,
                limit: limit as u64,
            });
            self.ack_broker(receipt);
            return;
        }
        let Some((lane, wrap)) = lane else {
            match serde_cbor::from_slice::<Ack>(&p.payload) {
                Ok(ack) => {
                    if !outbox.is_own(ack.journal) {
                        tracing::debug!(seq = ack.seq, journal = ?ack.journal.map(|j| j.to_string()), "an ack of another journal ignored");
                    }
                    outbox.handle(
                        clock::monotonic(),
                        Input::Ack {
                            seq: ack.seq,
                            journal: ack.journal,
                        },
                    );
                }
                Err(e) => tracing::warn!(error = %e, "malformed ack ignored"),
            }
            self.ack_broker(receipt);
            return;
        };
        // An empty retained message clears the topic; nothing to apply.
        if p.payload.is_empty() {
            self.ack_broker(receipt);
            return;
        }
        let delivered = Delivered {
            inbound: wrap(Vec::from(p.payload)),
            receipt: Receipt {
                client: self.client.clone(),
                publish: receipt,
            },
        };
        if let Err(mpsc::error::SendError(d)) = lane.send(delivered) {
            // Nobody applies it (shutting down): leave it to the broker.
            drop(d);
        }
    }

    fn publish_status(&self, h: &UplinkHandles, outbox: &Outbox) -> Result<(), UplinkError> {
        // The gateway's retained status is the running daemon's.
        if self.drain {
            return Ok(());
        }
        let mut status = h.status.borrow().clone();
        status.journal = Some(outbox.journal());
        status.state = crate::uplink::wire::LinkState::Online;
        status.acked = outbox.acked();
        status.backlog = h.journal.len();
        let oldest = h.journal.oldest_event().ok().flatten();
        status.backlog_oldest_seq = h.journal.oldest();
        status.backlog_oldest_at = oldest.map(|e| e.at);
        status.dropped_events = h.journal.dropped();
        let _ = self.client.try_publish(
            self.topics.status.as_str(),
            QoS::AtLeastOnce,
            true,
            wire::to_cbor(&status),
        );
        Ok(())
    }
}

/// Publish the link's state: O(1) journal bookkeeping and one keyed read
/// for the oldest event's time, never a scan.
fn update_state(
    h: &UplinkHandles,
    outbox: &Outbox,
    link: &Link,
    error: Option<String>,
) -> Result<(), UplinkError> {
    let oldest_at = h.journal.oldest_event().ok().flatten().map(|e| e.at);
    h.state.send_modify(|s| {
        s.connected = link.connected;
        s.acked = outbox.acked();
        s.backlog = h.journal.len();
        s.backlog_oldest_seq = h.journal.oldest();
        s.backlog_oldest_at = oldest_at;
        if link.connected {
            s.last_error = None;
        }
        if error.is_some() {
            s.last_error = error;
        }
    });
    Ok(())
}
