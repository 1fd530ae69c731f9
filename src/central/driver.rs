//! The async driver of `portier central`: one MQTT connection (mTLS, the
//! gateway's own rustls setup) and one PostgreSQL connection. The broker
//! loop hands deliveries to the writer; the writer plans a flush
//! ([`Plan`]), commits it ([`db::store`]), and only then publishes the acks
//! and acknowledges the deliveries to the broker (manual PUBACK, so a
//! crash before the commit means the broker delivers again).
//!
//! A failed transaction is retried with back-off (it is idempotent) and
//! nothing is acknowledged meanwhile; a record PostgreSQL refuses as data
//! is quarantined by [`db::store`], never the flush. A message larger than
//! `[broker] max_message_mib` is received (the MQTT client's limit is
//! MQTT's own, [`MQTT_MAX_PACKET`]), quarantined undecoded as `oversized`
//! and acknowledged: the broker never redelivers it into a reconnect loop.
//! The integrator verbs use [`publish_blobs`] to send signed snapshots,
//! deltas and commands.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, Outgoing, Publish, QoS};
use thiserror::Error;
use tokio::sync::{mpsc, watch};

use super::config::CentralConfig;
use super::db::{self, DbError};
use super::ingest::{
    Plan, RejectReason, Rejected, TopicKind, decode_batch, decode_status, parse_topic,
};
use super::{GatewayId, GatewayTopics};
use crate::mqtt::{MqttError, drive_until, mqtt_options};
use crate::uplink::wire::{Ack, to_cbor};

/// A failure of the central service or of a publication.
#[derive(Debug, Error)]
pub enum DriverError {
    /// PostgreSQL.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Certificates or keys for the broker.
    #[error(transparent)]
    Mqtt(#[from] MqttError),
    /// The broker did not take a publication.
    #[error("broker: {0}")]
    Broker(String),
}

/// Test hook: exit the process after this many committed flushes, before
/// any ack of the last one is published (the crash test's "kill between
/// insert and ack"). Read once at start; never set in production.
const EXIT_AFTER_COMMITS: &str = "PORTIER_CENTRAL_TEST_EXIT_AFTER_COMMITS";

/// The largest MQTT packet (remaining length 268 435 455 plus its fixed
/// header): central's MQTT client accepts anything a broker can deliver,
/// and refuses by `[broker] max_message_mib` itself, after receipt.
pub const MQTT_MAX_PACKET: usize = 256 << 20;

/// Run the service until `shutdown` turns true.
pub async fn run(
    config: CentralConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), DriverError> {
    let mut pg = db::connect(&config.postgres).await?;
    let schema = db::migrate(&mut pg).await?;
    // This month's partition exists before the first flush.
    db::ensure_partitions(&pg, config.retention.days).await?;
    let mut options = mqtt_options(&config.uplink(), &config.central.instance, None)?;
    let max = config.broker.max_message_mib << 20;
    options.set_max_packet_size(MQTT_MAX_PACKET, max);
    options.set_manual_acks(true);
    options.set_clean_session(!config.central.persistent_session);
    options.set_inflight(200);
    let (client, eventloop) = AsyncClient::new(options, 1024);
    tracing::info!(
        instance = %config.central.instance,
        events = %config.events_filter(),
        schema,
        "portier central started"
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let filters = [config.events_filter(), config.status_filter()];
    let (connected_tx, connected) = watch::channel(false);
    let poller = tokio::spawn(poll(
        eventloop,
        client.clone(),
        filters,
        tx,
        connected_tx,
        config.central.topic_root.clone(),
        max,
    ));
    let beacons = tokio::spawn(beacons(config.clone(), client.clone()));
    let maintenance = tokio::spawn(maintenance(config.clone()));
    let urgent = tokio::spawn(urgent_lane(config.clone()));
    let keeper = tokio::spawn(rules_keeper(config.clone()));
    let busy: Busy = Arc::new(Mutex::new(None));
    let service = tokio::spawn(service(connected, busy.clone(), schema));
    let exit_after: Option<u64> = std::env::var(EXIT_AFTER_COMMITS)
        .ok()
        .and_then(|v| v.parse().ok());
    let writer = Writer {
        config: &config,
        client: &client,
        pg,
        commits: 0,
        exit_after,
        busy,
    };
    tokio::select! {
        r = writer.run(rx) => r?,
        _ = shutdown.wait_for(|s| *s) => {}
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    service.abort();
    poller.abort();
    beacons.abort();
    maintenance.abort();
    urgent.abort();
    keeper.abort();
    let _ = client.disconnect().await;
    tracing::info!("portier central stopped");
    Ok(())
}

/// The urgent lane: its own MQTT connection (client id
/// `<instance>-urgent`, clean session) subscribed to `<root>/+/urgent`,
/// and its own PostgreSQL connection, so a duress alarm is stored within
/// moments whatever backlog the events lane is working through. Best
/// effort by design: the same events arrive in turn on `events`, which is
/// what is acknowledged; a lost urgent copy costs only time. Failures are
/// logged and the lane starts again after a second.
async fn urgent_lane(config: CentralConfig) {
    loop {
        if let Err(e) = urgent_lane_once(&config).await {
            tracing::warn!(error = %e, "urgent lane down; again in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The largest urgent message taken: one event, well under 4 KiB, in a
/// batch; anything larger is dropped unread (the same events come in turn
/// on `events`, where the quarantine sees them).
const URGENT_MAX_BYTES: usize = 64 << 10;
/// The most rows taken from one urgent message (a gateway sends one).
const URGENT_MAX_ROWS: usize = 4;
/// How often the lane prunes `urgent_events`.
const URGENT_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Urgent messages taken per gateway per minute; more are dropped here
/// (they still come in turn on `events`): one gateway cannot hold up the
/// others' alarms with a flood.
const URGENT_PER_MINUTE: u32 = 30;
/// An urgent event comes ahead of its gateway's backlog, which may be far
/// longer than `[ingest] seq_window`: it is taken up to this many windows
/// beyond its journal's highest stored seq.
const URGENT_WINDOWS: u64 = 64;

async fn urgent_lane_once(config: &CentralConfig) -> Result<(), DriverError> {
    let pg = db::connect(&config.postgres).await?;
    let id = format!("{}-urgent", config.central.instance);
    let mut options = mqtt_options(&config.uplink(), &id, None)?;
    options.set_clean_session(true);
    // Receive what a broker can deliver and drop the oversized here: a
    // packet over the client's limit would end the connection instead.
    options.set_max_packet_size(MQTT_MAX_PACKET, MQTT_MAX_PACKET);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let filter = config.urgent_filter();
    let root = &config.central.topic_root;
    let mut pruned_at: Option<Instant> = None;
    let mut taken: std::collections::HashMap<GatewayId, (Instant, u32)> = Default::default();
    loop {
        let now = crate::clock::monotonic();
        if pruned_at.is_none_or(|t| now.saturating_duration_since(t) >= URGENT_PRUNE_EVERY) {
            if let Err(e) = db::prune_urgent(&pg).await {
                tracing::warn!(error = %e, "urgent_events not pruned");
            }
            pruned_at = Some(now);
            taken.clear();
        }
        let event = eventloop
            .poll()
            .await
            .map_err(|e| DriverError::Broker(e.to_string()))?;
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                client
                    .subscribe(filter.as_str(), QoS::AtLeastOnce)
                    .await
                    .map_err(|e| DriverError::Broker(e.to_string()))?;
                tracing::info!(filter, "urgent lane connected");
            }
            Event::Incoming(Incoming::Publish(p)) => {
                let Ok((gateway, TopicKind::Urgent)) = parse_topic(root, &p.topic) else {
                    continue;
                };
                let now = crate::clock::monotonic();
                let (since, count) = taken.entry(gateway.clone()).or_insert((now, 0));
                if now.saturating_duration_since(*since) >= Duration::from_secs(60) {
                    (*since, *count) = (now, 0);
                }
                *count += 1;
                if *count > URGENT_PER_MINUTE {
                    tracing::warn!(%gateway, "more than {URGENT_PER_MINUTE} urgent messages a minute: dropped");
                    continue;
                }
                if p.payload.len() > URGENT_MAX_BYTES {
                    tracing::warn!(%gateway, bytes = p.payload.len(), "urgent message too large: dropped");
                    continue;
                }
                match decode_batch(&p.topic, &gateway, &p.payload) {
                    Ok(batch) if batch.rows.len() > URGENT_MAX_ROWS => {
                        tracing::warn!(%gateway, rows = batch.rows.len(), "urgent message with too many events: dropped");
                    }
                    Ok(batch) => match db::store_urgent(
                        &pg,
                        &batch.rows,
                        config.ingest.seq_window.saturating_mul(URGENT_WINDOWS),
                    )
                    .await
                    {
                        Ok(0) => {}
                        Ok(new) => {
                            tracing::warn!(%gateway, new, "urgent event stored ahead of the backlog");
                        }
                        // The connection's own failure ends the lane (it
                        // starts again); a row refused is skipped.
                        Err(e) if pg.is_closed() => return Err(e.into()),
                        Err(e) => tracing::warn!(%gateway, error = %e, "urgent event not stored"),
                    },
                    // The same event comes in turn on `events`, where a
                    // bad one is quarantined and seen.
                    Err(e) => tracing::warn!(error = %e, "urgent message not understood"),
                }
            }
            _ => {}
        }
    }
}

/// Since when the writer has been inside one attempt to commit a flush
/// (`None`: waiting for deliveries). Read by the watchdog.
type Busy = Arc<Mutex<Option<Instant>>>;

/// One attempt to commit may take this long before the watchdog ping is
/// withheld: a flush of `max_rows` commits in well under a second; a
/// statement hung on a dead connection never returns, and a restart
/// (systemd's watchdog) is the cure.
pub const STALL_ALLOWANCE: Duration = Duration::from_secs(30);

/// systemd: READY=1 once the schema is migrated and the broker has
/// acknowledged both subscriptions, then
/// watchdog pings at half `WatchdogSec` while the writer is idle or within
/// [`STALL_ALLOWANCE`] of one attempt. Outside systemd (no
/// `NOTIFY_SOCKET`) nothing is sent.
async fn service(mut connected: watch::Receiver<bool>, busy: Busy, schema: i32) {
    if connected.wait_for(|c| *c).await.is_err() {
        return;
    }
    let status = format!("schema {schema}, broker connected");
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
    let Some(limit) = sd_notify::watchdog_enabled() else {
        return;
    };
    tracing::info!(?limit, "systemd watchdog armed");
    let every = (limit / 2).max(Duration::from_millis(100));
    loop {
        let now = crate::clock::monotonic();
        let since = *busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match since.filter(|s| now.duration_since(*s) > STALL_ALLOWANCE) {
            None => notify(&[sd_notify::NotifyState::Watchdog]),
            Some(s) => {
                let secs = now.duration_since(s).as_secs();
                tracing::error!(
                    seconds = secs,
                    "a commit is stuck: withholding the watchdog ping"
                );
                notify(&[sd_notify::NotifyState::Status(&format!(
                    "stalled: one commit running for {secs} s"
                ))]);
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot reach systemd's notify socket");
    }
}

/// Partition upkeep, at start and every [`MAINTENANCE_EVERY`] on its own
/// PostgreSQL connection: this month's and the next
/// [`db::MONTHS_AHEAD`] months' `events` partitions, then retention
/// (`[retention] days`), if set. Every instance runs it; they serialise on
/// an advisory lock and the work is idempotent.
async fn maintenance(config: CentralConfig) {
    let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut pg = match db::connect(&config.postgres).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "partition maintenance: no database");
                continue;
            }
        };
        if let Err(e) = db::ensure_partitions(&pg, config.retention.days).await {
            tracing::warn!(error = %e, "partition maintenance: partitions not created");
        }
        if let Some(days) = config.retention.days {
            match db::retain(&mut pg, days).await {
                Ok(r) => tracing::info!(
                    days,
                    partitions = r.partitions.len(),
                    default_rows = r.default_rows,
                    rejected_rows = r.rejected_rows,
                    "retention applied"
                ),
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
    }
}

/// How often the rules keeper looks for gateways to repair.
pub const REPAIR_EVERY: Duration = Duration::from_secs(5);

/// A gateway back online behind what was published is repaired only
/// after this many seconds online: the broker's queued deltas and the
/// retained snapshot have had their chance by then.
pub const REPAIR_GRACE_SECONDS: i32 = 10;

/// Self-healing rules, every [`REPAIR_EVERY`] on its own PostgreSQL
/// connection (`docs/central.md`, *Self-healing rules*): a gateway that
/// refused a delta for want of a full snapshot, or came back online behind
/// what was published, gets the full snapshot central would have it hold
/// ([`super::repair::rebuild`]) at a new version, retained, once per
/// operator publication (`rules_repairs`, a `rules_repushed` alarm).
async fn rules_keeper(config: CentralConfig) {
    let Some(key) = signing_key(&config, "no rules repairs") else {
        return;
    };
    let mut tick = tokio::time::interval(REPAIR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pg: Option<tokio_postgres::Client> = None;
    loop {
        tick.tick().await;
        if pg.as_ref().is_none_or(|c| c.is_closed()) {
            pg = db::connect(&config.postgres)
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "rules keeper: no database"))
                .ok();
        }
        let Some(c) = pg.as_mut() else { continue };
        let candidates = match db::repair_candidates(c, REPAIR_GRACE_SECONDS).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "rules keeper: gateways not read");
                pg = None;
                continue;
            }
        };
        tracing::debug!(candidates = candidates.len(), "rules keeper pass");
        for candidate in candidates {
            if let Err(e) = repair(c, &config, &key, &candidate).await {
                tracing::warn!(gateway = %candidate.gateway, error = %e, "rules repair failed; retried");
            }
        }
    }
}

/// Rebuild, record and publish one gateway's snapshot (see
/// [`rules_keeper`]); the claim in `rules_repairs` and the record commit
/// only after the broker confirmed the publication.
async fn repair(
    pg: &mut tokio_postgres::Client,
    config: &CentralConfig,
    key: &ed25519_dalek::SigningKey,
    c: &db::RepairCandidate,
) -> Result<(), DriverError> {
    let lineage = db::rules_lineage(pg, &c.gateway).await?;
    let version = db::next_version(pg, &c.gateway).await?;
    let issued = jiff::Timestamp::try_from(std::time::UNIX_EPOCH + crate::clock::since_epoch())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let expires = issued
        .checked_add(jiff::SignedDuration::from_hours(
            i64::from(config.signing.rules_valid_days) * 24,
        ))
        .unwrap_or(issued);
    let rebuilt = super::repair::rebuild(
        key,
        lineage.snapshot.as_deref(),
        &lineage.deltas,
        version,
        issued,
        expires,
    );
    let tx = pg.transaction().await.map_err(DbError::from)?;
    let r = match rebuilt {
        Ok(r) => r,
        Err(e) => {
            // Recorded once (an alarm): an operator must push again.
            if db::claim_repair(&tx, c, None, &e.to_string()).await? {
                tracing::error!(gateway = %c.gateway, reason = c.reason.code(), error = %e, "rules cannot be published again");
            }
            tx.commit().await.map_err(DbError::from)?;
            return Ok(());
        }
    };
    let detail = format!(
        "snapshot v{} with {} delta(s) after it, as v{version}",
        lineage.snapshot_version.unwrap_or(0),
        lineage.deltas.len()
    );
    if !db::claim_repair(&tx, c, Some(version), &detail).await? {
        return Ok(());
    }
    let cards: Vec<String> = r
        .snapshot
        .credentials
        .iter()
        .map(|c| c.key.to_string())
        .collect();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&r.blob));
    db::record_published_in(
        &tx,
        &db::Publication {
            gateway: &c.gateway,
            version,
            kind: "snapshot",
            base_version: None,
            building: &r.snapshot.building,
            credentials: cards.len(),
            digest,
            blob: &r.blob,
            repair: true,
        },
        &cards,
    )
    .await?;
    // Its own connection, confirmed by the broker (PUBACK) before the
    // claim commits: a repair recorded is a repair the broker holds
    // (retained), never one lost in a reconnect.
    let topic = GatewayTopics::new(&config.central.topic_root, &c.gateway).snapshot;
    publish_blobs(config, vec![(topic, r.blob, true)]).await?;
    tx.commit().await.map_err(DbError::from)?;
    tracing::warn!(
        gateway = %c.gateway,
        reason = c.reason.code(),
        rules_version = ?c.rules_version,
        version,
        "rules published again as a full snapshot (rules_repushed)"
    );
    Ok(())
}

/// The signing key, or `None` (logged, with what goes without it).
fn signing_key(config: &CentralConfig, without: &str) -> Option<ed25519_dalek::SigningKey> {
    match std::fs::read_to_string(&config.signing.key)
        .map_err(|e| e.to_string())
        .and_then(|t| crate::config::read_hex32(&t).map_err(|e| e.to_string()))
    {
        Ok(seed) => Some(ed25519_dalek::SigningKey::from_bytes(&seed)),
        Err(e) => {
            tracing::error!(key = %config.signing.key.display(), error = %e, "{without}: the signing key is unreadable");
            None
        }
    }
}

/// How often partitions are created ahead and retention applied.
pub const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// Signed time beacons to every known gateway, every `[signing]
/// beacon_seconds`: QoS 0 (a broker never queues a stale one for a
/// disconnected gateway) and retained (a gateway that connects gets the
/// last at once; it takes a retained one only as a lower bound). On its own
/// PostgreSQL connection, so a long flush never delays the time.
async fn beacons(config: CentralConfig, client: AsyncClient) {
    let Some(key) = signing_key(&config, "no time beacons") else {
        return;
    };
    let every = Duration::from_secs(config.signing.beacon_seconds.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pg: Option<tokio_postgres::Client> = None;
    loop {
        tick.tick().await;
        if pg.as_ref().is_none_or(|c| c.is_closed()) {
            pg = db::connect(&config.postgres)
                .await
                .inspect_err(|e| tracing::warn!(error = %e, "time beacons: no database"))
                .ok();
        }
        let Some(c) = &pg else { continue };
        let gateways = match db::gateway_ids(c).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "time beacons: gateways not read");
                pg = None;
                continue;
            }
        };
        for gateway in gateways {
            let beacon = crate::command::beacon::Beacon {
                gateway: gateway.as_str().to_owned(),
                at: jiff::Timestamp::try_from(std::time::UNIX_EPOCH + crate::clock::since_epoch())
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            };
            let bytes = crate::command::beacon::sign_beacon(&key, &beacon);
            let topic = format!("{}/{}/time", config.central.topic_root, gateway);
            if let Err(e) = client.try_publish(topic, QoS::AtMostOnce, true, bytes) {
                tracing::debug!(error = %e, "time beacon not queued");
            }
        }
    }
}

/// The broker loop: (re)subscribe on every connection, pass deliveries on
/// (decoded).
async fn poll(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: [String; 2],
    tx: mpsc::UnboundedSender<(Decoded, Publish)>,
    connected: watch::Sender<bool>,
    root: String,
    max: usize,
) {
    let mut backoff = Duration::from_millis(500);
    // SubAcks still awaited on this connection: "connected" (the log line,
    // READY=1) only once both subscriptions stand, since with a clean
    // session nothing reaches central before them.
    let mut awaiting = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff = Duration::from_millis(500);
                tracing::debug!("broker session up; subscribing");
                awaiting = filters.len();
                for f in &filters {
                    if let Err(e) = client.try_subscribe(f.as_str(), QoS::AtLeastOnce) {
                        tracing::warn!(filter = %f, error = %e, "subscribe not queued");
                    }
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(_))) if awaiting > 0 => {
                awaiting -= 1;
                if awaiting == 0 {
                    tracing::info!("connected to the broker");
                    connected.send_replace(true);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(mut p))) => {
                // Decoded here, beside the writer's commit (the runtime
                // has two workers): the next flush is ready when the
                // current one is committed.
                let decoded = decode(&root, max, &mut p);
                if tx.send((decoded, p)).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "broker connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

struct Writer<'a> {
    config: &'a CentralConfig,
    client: &'a AsyncClient,
    pg: tokio_postgres::Client,
    commits: u64,
    exit_after: Option<u64>,
    busy: Busy,
}

impl Writer<'_> {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<(Decoded, Publish)>,
    ) -> Result<(), DriverError> {
        let root = self.config.central.topic_root.clone();
        let add = |plan: &mut Plan<Publish>, (d, p)| add(plan, d, p);
        let linger = Duration::from_millis(self.config.ingest.linger_ms);
        let mut plan: Plan<Publish> = Plan::new(self.config.ingest.max_rows);
        loop {
            // Wait for the first delivery (unless some came during the
            // last commit), then gather until full or quiet.
            if plan.is_empty() {
                let Some(first) = rx.recv().await else {
                    return Ok(());
                };
                add(&mut plan, first);
            }
            while !plan.is_full() {
                match rx.try_recv() {
                    Ok(p) => add(&mut plan, p),
                    Err(_) => match tokio::time::timeout(linger, rx.recv()).await {
                        Ok(Some(p)) => add(&mut plan, p),
                        _ => break,
                    },
                }
            }
            let flush = plan.take();
            let started = crate::clock::monotonic();
            // While PostgreSQL commits, the next deliveries go into the
            // next plan: it is ready when this commit ends.
            let acks = {
                let commit = self.commit(&flush);
                tokio::pin!(commit);
                loop {
                    tokio::select! {
                        biased;
                        acks = &mut commit => break acks,
                        Some(p) = rx.recv(), if !plan.is_full() => add(&mut plan, p),
                    }
                }
            };
            let commit_ms = crate::clock::monotonic()
                .saturating_duration_since(started)
                .as_secs_f64()
                * 1e3;
            self.commits += 1;
            if self.exit_after.is_some_and(|n| self.commits >= n) {
                tracing::warn!("{EXIT_AFTER_COMMITS}: exiting after the commit, before the acks");
                std::process::exit(3);
            }
            for (gateway, journal, seq) in acks {
                let topic = GatewayTopics::new(&root, &gateway).ack;
                let ack = Ack {
                    seq,
                    journal: Some(journal),
                };
                if let Err(e) = self
                    .client
                    .publish(topic, QoS::AtLeastOnce, false, to_cbor(&ack))
                    .await
                {
                    tracing::warn!(%gateway, error = %e, "ack not queued");
                }
            }
            for p in &flush.tokens {
                if let Err(e) = self.client.ack(p).await {
                    tracing::warn!(error = %e, "delivery ack not queued");
                }
            }
            tracing::debug!(
                rows = flush.rows.len(),
                statuses = flush.statuses.len(),
                deliveries = flush.tokens.len(),
                commit_ms,
                "flush committed"
            );
        }
    }

    /// Commit `flush`, retrying (it is idempotent) until it succeeds. Rows
    /// and statuses PostgreSQL refuses as data are quarantined inside
    /// [`db::store`]; should a data error escape that (a bug), the flush is
    /// given up after a few tries: nothing is acked, the gateways keep
    /// those events (their backlog shows in `status`), central does not
    /// stall.
    async fn commit(
        &mut self,
        flush: &super::ingest::Flush<Publish>,
    ) -> Vec<(GatewayId, crate::journal::JournalId, u64)> {
        let mut backoff = Duration::from_millis(200);
        let mut data_errors = 0;
        let busy = self.busy.clone();
        let set_busy = |v: Option<Instant>| {
            *busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = v;
        };
        loop {
            set_busy(Some(crate::clock::monotonic()));
            let result = db::store(
                &mut self.pg,
                flush,
                &self.config.central.topic_root,
                self.config.ingest.seq_window,
            )
            .await;
            set_busy(None);
            match result {
                Ok(stored) => {
                    for (reason, n) in &stored.rejected {
                        tracing::warn!(
                            reason = reason.code(),
                            records = n,
                            "quarantined in events_rejected (see `portier central alarms`)"
                        );
                    }
                    return stored.acks;
                }
                Err(e) => {
                    let data = matches!(&e, DbError::Sql(s) if db::is_data_error(s));
                    if data {
                        data_errors += 1;
                        if data_errors >= 3 {
                            let gateways: Vec<&str> =
                                flush.gateways.iter().map(GatewayId::as_str).collect();
                            tracing::error!(error = %e, ?gateways, "PostgreSQL refuses these events as data; not acknowledged");
                            return Vec::new();
                        }
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff, "storing events failed; nothing acknowledged");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    if self.pg.is_closed() {
                        match db::connect(&self.config.postgres).await {
                            Ok(c) => self.pg = c,
                            Err(e) => tracing::warn!(error = %e, "PostgreSQL reconnect"),
                        }
                    }
                }
            }
        }
    }
}

/// One delivery, decoded (by the broker loop) for the writer's plan.
#[derive(Debug)]
enum Decoded {
    /// An event batch of a gateway.
    Events(GatewayId, super::ingest::Batch),
    /// A gateway's status (or last will).
    Status(super::ingest::StatusRow),
    /// Nothing to store (acknowledged with the next flush).
    Nothing,
    /// What cannot be stored: quarantined with the next flush.
    Rejected(Rejected),
}

/// Decode one delivery (its payload is taken). What cannot be stored is
/// quarantined (recorded with the next flush, then acknowledged to the
/// broker): a message over `max` bytes undecoded, an undecodable one or
/// one naming another gateway whole, an unusable event alone.
fn decode(root: &str, max: usize, p: &mut Publish) -> Decoded {
    let payload = std::mem::take(&mut p.payload);
    let topic = p.topic.clone();
    let parsed = parse_topic(root, &topic);
    let gateway = parsed.as_ref().ok().map(|(g, _)| g.clone());
    if payload.len() > max {
        tracing::warn!(gateway = ?gateway.as_ref().map(GatewayId::as_str), bytes = payload.len(), max, "message over [broker] max_message_mib: quarantined");
        let detail = format!(
            "{} bytes, over [broker] max_message_mib ({max} bytes); not decoded",
            payload.len()
        );
        return Decoded::Rejected(Rejected::new(
            gateway,
            &topic,
            None,
            &payload,
            RejectReason::Oversized,
            detail,
        ));
    }
    let decoded = parsed.and_then(|(gateway, kind)| match kind {
        TopicKind::Events => {
            decode_batch(&topic, &gateway, &payload).map(|b| Decoded::Events(gateway, b))
        }
        TopicKind::Status => decode_status(&topic, &gateway, &payload)
            .map(|s| s.map_or(Decoded::Nothing, Decoded::Status)),
        // The urgent lane's topic: not subscribed on this connection.
        TopicKind::Urgent => Ok(Decoded::Nothing),
    });
    decoded.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "delivery quarantined");
        let reason = e.reason();
        Decoded::Rejected(Rejected::new(
            gateway,
            &topic,
            None,
            &payload,
            reason,
            e.to_string(),
        ))
    })
}

/// A decoded delivery into the plan.
fn add(plan: &mut Plan<Publish>, decoded: Decoded, p: Publish) {
    match decoded {
        Decoded::Events(gateway, batch) => plan.add_events(gateway, batch, p),
        Decoded::Status(status) => plan.add_status(status, p),
        Decoded::Nothing => plan.add_nothing(p),
        Decoded::Rejected(r) => plan.add_rejected(r, p),
    }
}

/// Publish signed blobs (topic, bytes, retained) with a fresh clean
/// session, each confirmed by the broker before the next.
pub async fn publish_blobs(
    config: &CentralConfig,
    blobs: Vec<(String, Vec<u8>, bool)>,
) -> Result<(), DriverError> {
    let mut r = [0u8; 6];
    crate::clock::os_entropy(&mut r);
    let id = format!("{}-cli-{}", config.central.instance, hex::encode(r));
    let mut options = mqtt_options(&config.uplink(), &id, None)?;
    let max = config.broker.max_message_mib << 20;
    options.set_max_packet_size(max, max);
    options.set_clean_session(true);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    for (topic, bytes, retain) in blobs {
        client
            .publish(topic.as_str(), QoS::AtLeastOnce, retain, bytes)
            .await
            .map_err(|e| DriverError::Broker(e.to_string()))?;
        let mut sent = false;
        drive_until(&mut eventloop, Duration::from_secs(60), |e| {
            if matches!(e, Event::Outgoing(Outgoing::Publish(_))) {
                sent = true;
            }
            sent && matches!(e, Event::Incoming(Incoming::PubAck(_)))
        })
        .await
        .map_err(|e| DriverError::Broker(format!("publishing to {topic}: {e}")))?;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
    Ok(())
}
