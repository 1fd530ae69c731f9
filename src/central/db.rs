//! PostgreSQL: the connection, the migrations (`migrations/central/*.sql`,
//! applied at start in one transaction under an advisory lock, recorded in
//! `central_schema`), and every statement central runs.
//!
//! Guarantees: a flush is one transaction; the gateways it touches are
//! locked first, in id order, then their journals in `(gateway, journal)`
//! order (instances sharing the load never deadlock and compute each
//! journal's contiguous prefix one at a time); the ack values it returns
//! are committed before the caller sees them. Events are stored under
//! `(gateway, journal, seq)`: a journal moved aside and a new one both
//! start at 1, and neither is taken for the other's duplicates. A row PostgreSQL
//! refuses as data (SQLSTATE class 22, 23, 54) is found by bisecting the
//! flush under savepoints and quarantined in `events_rejected` with the
//! flush's other quarantined records; the rest is stored. Any other error
//! fails the whole transaction (the caller retries; nothing is acked).

use jiff::Timestamp;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use super::GatewayId;
use super::config::{PostgresConfig, SslMode};
use super::ingest::{Flush, RejectReason, Rejected, Row, beyond_window, contiguous_end};
use super::pgtls::{MakeRustls, PgTlsError};
use crate::journal::JournalId;

/// The migrations, in order: (schema version, SQL). Each file of
/// `migrations/central/` is listed here (a test checks none is missing).
pub const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("../../migrations/central/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/central/0002_events_rejected.sql"),
    ),
    (
        3,
        include_str!("../../migrations/central/0003_journals.sql"),
    ),
    (4, include_str!("../../migrations/central/0004_alarms.sql")),
    (
        5,
        include_str!("../../migrations/central/0005_events_partitioned.sql"),
    ),
    (
        6,
        include_str!("../../migrations/central/0006_rules_repairs.sql"),
    ),
    (7, include_str!("../../migrations/central/0007_readers.sql")),
    (8, include_str!("../../migrations/central/0008_areas.sql")),
    (
        9,
        include_str!("../../migrations/central/0009_fire_alarms_follow.sql"),
    ),
    (
        10,
        include_str!("../../migrations/central/0010_reader_upkeep.sql"),
    ),
];

/// Advisory lock key for migrations ("portier" in ASCII, truncated).
const MIGRATION_LOCK: i64 = 0x0070_6f72_7469_6572;

/// At most this many stored seqs above the ack are walked per gateway and
/// flush (a gateway sends at most its window beyond the last ack).
const WALK_LIMIT: i64 = 100_000;

/// A PostgreSQL failure.
#[derive(Debug, Error)]
pub enum DbError {
    /// Connecting failed.
    #[error("PostgreSQL at `{connect}`: {source}")]
    Connect {
        /// The connection string (it holds no password).
        connect: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// The password file is unreadable.
    #[error("{path}: {source}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection string does not parse.
    #[error("[postgres] connect: {0}")]
    Config(String),
    /// The CA, certificate or key for TLS to PostgreSQL is unusable.
    #[error(transparent)]
    Tls(#[from] PgTlsError),
    /// The database has a newer schema than this build knows.
    #[error(
        "the database's central schema is version {have}, newer than this build's {known}: upgrade portier"
    )]
    NewerSchema {
        /// In the database.
        have: i32,
        /// Known here.
        known: i32,
    },
    /// A statement failed.
    #[error("PostgreSQL: {0}")]
    Sql(#[from] tokio_postgres::Error),
    /// A user's query did not give credentials.
    #[error("{0}")]
    Import(#[from] super::import::ImportError),
    /// A user's `--from-sql` query was refused.
    #[error("--from-sql: {0}")]
    FromSql(FromSqlError),
}

/// Why a `--from-sql` query was refused.
#[derive(Debug, Error)]
pub enum FromSqlError {
    /// More than one statement (`…; …`).
    #[error("exactly one statement is allowed (a SELECT); this text holds several")]
    NotOneStatement,
    /// PostgreSQL refused it; a write is `SQLSTATE 25006` (the query runs
    /// in a READ ONLY transaction).
    #[error("{}", describe(.0))]
    Refused(tokio_postgres::Error),
}

impl FromSqlError {
    /// The SQLSTATE code, when PostgreSQL gave one (`25006`: a write in
    /// the read-only transaction).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::NotOneStatement => None,
            Self::Refused(e) => e.code().map(tokio_postgres::error::SqlState::code),
        }
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) if d.code() == &tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION => {
            format!(
                "the query runs read-only and may not write (SQLSTATE 25006: {})",
                d.message()
            )
        }
        Some(d) => format!("SQLSTATE {}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

/// Connect (the connection's task runs on the current tokio runtime).
pub async fn connect(cfg: &PostgresConfig) -> Result<Client, DbError> {
    connect_with(cfg, None).await
}

/// A connection whose server notifications (`LISTEN`) are handed to
/// `notices`.
pub async fn connect_listening(
    cfg: &PostgresConfig,
) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), DbError> {
    let (tx, rx) = mpsc::unbounded_channel();
    Ok((connect_with(cfg, Some(tx)).await?, rx))
}

async fn connect_with(
    cfg: &PostgresConfig,
    notices: Option<mpsc::UnboundedSender<Notification>>,
) -> Result<Client, DbError> {
    let mut pg: tokio_postgres::Config = cfg
        .connect
        .parse()
        .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
    if let Some(path) = &cfg.password_file {
        let text = std::fs::read_to_string(path).map_err(|source| DbError::PasswordFile {
            path: path.display().to_string(),
            source,
        })?;
        pg.password(text.trim_end_matches(['\n', '\r']));
    }
    if pg.get_application_name().is_none() {
        pg.application_name("portier-central");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(CONNECT_TIMEOUT);
    }
    let failed = |source| DbError::Connect {
        connect: cfg.connect.clone(),
        source,
    };
    match cfg.mode() {
        SslMode::Disable => {
            pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = pg.connect(NoTls).await.map_err(failed)?;
            spawn_connection(connection, notices);
            Ok(client)
        }
        SslMode::VerifyFull => {
            let ca = cfg.ca.as_deref().ok_or_else(|| {
                DbError::Config("sslmode = \"verify-full\" needs [postgres] ca".into())
            })?;
            let client_cert = cfg.cert.as_deref().zip(cfg.key.as_deref());
            let tls = MakeRustls::new(super::pgtls::client_config(ca, client_cert)?);
            // TLS or nothing: a server that does not offer it is refused.
            pg.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = pg.connect(tls).await.map_err(failed)?;
            spawn_connection(connection, notices);
            Ok(client)
        }
    }
}

/// A connection attempt gives up after this long (unless the connection
/// string sets `connect_timeout`): a database host that drops packets must
/// not hold the writer, or the watchdog, for minutes.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Drive the connection; hand its notifications to `notices`, if any.
fn spawn_connection<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notices: Option<mpsc::UnboundedSender<Notification>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some(tx) = &notices {
                        let _ = tx.send(n);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "PostgreSQL connection ended");
                    return;
                }
                None => return,
            }
        }
    });
}

/// Apply the migrations this database lacks; returns the schema version.
pub async fn migrate(client: &mut Client) -> Result<i32, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS central_schema (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let have: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM central_schema", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if have > known {
        return Err(DbError::NewerSchema { have, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > have) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO central_schema (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!(version, "central schema migrated");
    }
    tx.commit().await?;
    Ok(known)
}

/// Months of `events` partitions central keeps created ahead of the
/// current one (UTC).
pub const MONTHS_AHEAD: i32 = 3;

/// Months before the current one whose partitions central creates too
/// (a gateway's backlog after an outage); older events without a
/// partition land in `events_default`.
pub const MONTHS_BACK: i32 = 2;

/// Advisory lock key of partition maintenance (the same as the SQL
/// function `portier_events_partition` takes).
const PARTITION_LOCK: i64 = 8_030_898_258_163_361_394;

/// Create the missing `events` partitions from [`MONTHS_BACK`] months
/// before this one to [`MONTHS_AHEAD`] after (UTC), leaving out months
/// that retention (`retention_days`) would drop; returns every name. Rows
/// of a new month waiting in `events_default` move into it.
pub async fn ensure_partitions(
    client: &Client,
    retention_days: Option<u32>,
) -> Result<Vec<String>, DbError> {
    let days = retention_days.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    let rows = client
        .query(
            "SELECT portier_events_partition(m)
               FROM (SELECT now() + make_interval(months => k) AS m
                       FROM generate_series(-$1::int, $2::int) k) months
              WHERE $3::int IS NULL
                 OR (date_trunc('month', m AT TIME ZONE 'UTC') + interval '1 month')
                        AT TIME ZONE 'UTC' > now() - make_interval(days => $3::int)
              ORDER BY m",
            &[&MONTHS_BACK, &MONTHS_AHEAD, &days],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What [`retain`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retained {
    /// Monthly partitions dropped whole (their month ended before the
    /// cutoff).
    pub partitions: Vec<String>,
    /// Rows deleted from `events_default` (events whose month has no
    /// partition: a gateway clock far off) older than the cutoff.
    pub default_rows: u64,
    /// Quarantine records last seen before the cutoff that no ack walk
    /// needs any more.
    pub rejected_rows: u64,
}

/// Retention: drop every monthly `events` partition whose month ended
/// more than `days` ago, delete older rows of `events_default`, and prune
/// `events_rejected` records last seen before then (a settling record
/// only once its seq is at or below its journal's ack). An event is kept
/// at least `days` days, at most a month longer.
pub async fn retain(client: &mut Client, days: u32) -> Result<Retained, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    let days = i32::try_from(days).unwrap_or(i32::MAX);
    let names: Vec<String> = tx
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'events'::regclass
                AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
                AND (to_date(substr(c.relname, 8), 'YYYY_MM') + interval '1 month')::timestamp
                        AT TIME ZONE 'UTC' <= now() - make_interval(days => $1)
              ORDER BY c.relname",
            &[&days],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in &names {
        // The name matched events_YYYY_MM above: nothing to quote.
        tx.batch_execute(&format!("DROP TABLE {name}")).await?;
        tracing::info!(partition = %name, days, "retention: events partition dropped");
    }
    let default_rows = tx
        .execute(
            "DELETE FROM events_default WHERE at < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?;
    let rejected_rows = tx
        .execute(
            "DELETE FROM events_rejected r
              WHERE r.last_at < now() - make_interval(days => $1)
                AND (NOT r.settles
                     OR r.seq <= (SELECT j.acked_seq FROM journals j
                                   WHERE j.gateway = r.gateway AND j.journal = r.journal))",
            &[&days],
        )
        .await?;
    tx.commit().await?;
    Ok(Retained {
        partitions: names,
        default_rows,
        rejected_rows,
    })
}

/// Whether PostgreSQL refused a statement for its data (SQLSTATE class 22
/// data exception, 23 integrity constraint, 54 program limit exceeded,
/// e.g. an index row too large): retrying cannot help, the row must go.
pub fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(&c.code()[..2], "22" | "23" | "54"))
}

/// PostgreSQL's refusal as one line (SQLSTATE and message).
fn refusal(e: &tokio_postgres::Error) -> String {
    describe(e)
}

/// What a flush did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Per journal of a gateway that sent events, the highest contiguous
    /// seq now settled (stored, or quarantined as its own unstorable
    /// event): the ack to publish, naming the journal.
    pub acks: Vec<(GatewayId, JournalId, u64)>,
    /// Records written to (or counted again in) `events_rejected`, by
    /// reason.
    pub rejected: std::collections::BTreeMap<RejectReason, usize>,
}

/// Store one flush in one transaction. Rows further than `seq_window`
/// beyond their gateway's ack, and rows or statuses PostgreSQL refuses as
/// data, are quarantined with `flush.rejected`; everything else is stored.
pub async fn store<T>(
    client: &mut Client,
    flush: &Flush<T>,
    topic_root: &str,
    seq_window: u64,
) -> Result<Stored, DbError> {
    let mut tx = client.transaction().await?;
    tx.batch_execute(STAGING).await?;
    // Lock every touched gateway's row first, in id order.
    let mut ids: Vec<&GatewayId> = flush
        .gateways
        .iter()
        .chain(flush.statuses.iter().map(|s| &s.gateway))
        .collect();
    ids.sort();
    ids.dedup();
    // One statement; its rows are inserted (or updated: locked) in the
    // order of the sorted array.
    let names: Vec<&str> = ids.iter().map(|g| g.as_str()).collect();
    let locked = tx
        .query(
            "INSERT INTO gateways (id, last_seen)
             SELECT id, now() FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY n
             ON CONFLICT (id) DO UPDATE SET last_seen = now()
             RETURNING id, state, journal",
            &[&names],
        )
        .await?;
    let mut states = std::collections::BTreeMap::new();
    // The journal each gateway writes now (`gateways.journal`), as far as
    // central knows.
    let mut current: std::collections::BTreeMap<GatewayId, Option<JournalId>> =
        std::collections::BTreeMap::new();
    for row in &locked {
        let Ok(id) = row.get::<_, String>(0).parse::<GatewayId>() else {
            continue;
        };
        states.insert(id.clone(), row.get::<_, String>(1));
        current.insert(id, journal_col(row.get(2)));
    }
    // Then the journals of the batches, in (gateway, journal) order (the
    // order of `flush.journals`), in one statement: each keeps its own
    // acknowledged seq.
    let journal_gateways: Vec<&str> = flush.journals.iter().map(|(g, _)| g.as_str()).collect();
    let journal_ids: Vec<&[u8]> = flush
        .journals
        .iter()
        .map(|(_, j)| &j.as_bytes()[..])
        .collect();
    let journal_rows = tx
        .query(
            "INSERT INTO journals (gateway, journal)
             SELECT g, j FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS u(g, j, n)
              ORDER BY n
             ON CONFLICT (gateway, journal) DO UPDATE SET last_seen = now()
             RETURNING gateway, journal, acked_seq, (xmax = 0) AS new, stored_max",
            &[&journal_gateways, &journal_ids],
        )
        .await?;
    let mut locked_journals = std::collections::BTreeMap::new();
    for row in &journal_rows {
        if let (Ok(g), Some(j)) = (
            row.get::<_, String>(0).parse::<GatewayId>(),
            journal_col(row.get(1)),
        ) {
            let values: (i64, bool, i64) = (row.get(2), row.get(3), row.get(4));
            locked_journals.insert((g, j), values);
        }
    }
    let mut acked = std::collections::BTreeMap::new();
    let mut fresh_above = std::collections::BTreeMap::new();
    for (g, j) in &flush.journals {
        let Some(&(acked_seq, new, stored_max)) = locked_journals.get(&(g.clone(), *j)) else {
            continue;
        };
        acked.insert((g.clone(), *j), acked_seq);
        // Above both, a seq is certainly not in `events` (see insert_rows).
        let floor = acked_seq.max(stored_max);
        fresh_above.insert((g.clone(), *j), u64::try_from(floor).unwrap_or(0));
        // A journal central has not seen before, or the first of the
        // gateway, is the one it writes now (its status says so too:
        // `store_status`).
        let now = current.get(g).copied().flatten();
        if now != Some(*j) && (new || now.is_none()) {
            claim_journal(&tx, g, now, *j).await?;
            current.insert(g.clone(), Some(*j));
        }
    }
    let acked_of = |g: &GatewayId, j: JournalId| {
        u64::try_from(acked.get(&(g.clone(), j)).copied().unwrap_or(0)).unwrap_or(0)
    };
    let events_topic = |g: &GatewayId| format!("{topic_root}/{g}/events");
    let mut rejected: Vec<Rejected> = flush.rejected.clone();
    let mut keep: Vec<&Row> = Vec::with_capacity(flush.rows.len());
    for r in &flush.rows {
        let have = acked_of(&r.gateway, r.journal);
        if beyond_window(r.seq, have, seq_window) {
            rejected.push(
                Rejected::new(
                    Some(r.gateway.clone()),
                    &events_topic(&r.gateway),
                    Some(r.seq),
                    r.json.as_bytes(),
                    RejectReason::SeqOutOfWindow,
                    format!(
                        "seq {} is more than [ingest] seq_window = {seq_window} beyond the acknowledged {have} of journal {}",
                        r.seq, r.journal
                    ),
                )
                .of_journal(r.journal),
            );
        } else {
            keep.push(r);
        }
    }
    // The rows, bisected under savepoints when PostgreSQL refuses one.
    let mut pending = vec![&keep[..]];
    while let Some(chunk) = pending.pop() {
        if chunk.is_empty() {
            continue;
        }
        let sp = tx.savepoint("portier_rows").await?;
        match insert_rows(&sp, chunk, &fresh_above).await {
            Ok(()) => sp.commit().await?,
            Err(e) if is_data_error(&e) => {
                sp.rollback().await?;
                if let [r] = chunk {
                    rejected.push(
                        Rejected::new(
                            Some(r.gateway.clone()),
                            &events_topic(&r.gateway),
                            Some(r.seq),
                            r.json.as_bytes(),
                            RejectReason::RefusedByDatabase,
                            refusal(&e),
                        )
                        .of_journal(r.journal),
                    );
                } else {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    pending.push(b);
                    pending.push(a);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The highest seq stored per journal (a quarantined row may raise it:
    // that only sends a later duplicate through the lookup).
    let mut top_kept: std::collections::BTreeMap<(&GatewayId, JournalId), u64> =
        std::collections::BTreeMap::new();
    for r in &keep {
        let t = top_kept.entry((&r.gateway, r.journal)).or_insert(0);
        *t = (*t).max(r.seq);
    }
    // (Recorded with the journal's ack below, in one statement.)
    for s in &flush.statuses {
        let sp = tx.savepoint("portier_status").await?;
        let now = current.get(&s.gateway).copied().flatten();
        match store_status(&sp, s, states.get(&s.gateway), now).await {
            Ok(()) => sp.commit().await?,
            Err(e) if is_data_error(&e) => {
                sp.rollback().await?;
                rejected.push(Rejected::new(
                    Some(s.gateway.clone()),
                    &format!("{topic_root}/{}/status", s.gateway),
                    None,
                    s.json.as_bytes(),
                    RejectReason::RefusedByDatabase,
                    refusal(&e),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut stored = Stored::default();
    if !rejected.is_empty() {
        let quarantine = tx
            .prepare(
                "INSERT INTO events_rejected
                     (gateway, topic, seq, reason, settles, length, raw, digest, detail, journal)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (coalesce(gateway, ''), coalesce(journal, '\\x'::bytea), reason, digest)
                 DO UPDATE SET repeats = events_rejected.repeats + 1, last_at = now()",
            )
            .await?;
        for r in &rejected {
            tx.execute(
                &quarantine,
                &[
                    &r.gateway.as_ref().map(GatewayId::as_str),
                    &r.topic,
                    &r.seq.and_then(|s| i64::try_from(s).ok()),
                    &r.reason.code(),
                    &r.settles(),
                    &i64::try_from(r.length).unwrap_or(i64::MAX),
                    &r.raw,
                    &&r.digest[..],
                    &r.detail,
                    &r.journal.as_ref().map(|j| &j.as_bytes()[..]),
                ],
            )
            .await?;
            *stored.rejected.entry(r.reason).or_default() += 1;
        }
    }
    // The contiguous walk over what is settled: stored events, and the
    // quarantined events that settle their seq. Common case: this flush
    // continues the prefix, so one count proves (acked, top] complete and
    // only seqs above `top` (stored earlier by another instance) are
    // fetched; after a gap, the walk starts at the ack.
    let mut tops = std::collections::BTreeMap::new();
    for (g, j, seq) in keep.iter().map(|r| (&r.gateway, r.journal, r.seq)).chain(
        rejected
            .iter()
            .filter(|r| r.settles())
            .filter_map(|r| Some((r.gateway.as_ref()?, r.journal?, r.seq?))),
    ) {
        let t = tops.entry((g.clone(), j)).or_insert(seq);
        *t = (*t).max(seq);
    }
    // Only after a gap (rare): no preparation otherwise.
    let count = "SELECT (SELECT count(*) FROM events
                      WHERE gateway = $1 AND journal = $4 AND seq > $2 AND seq <= $3)
                  + (SELECT count(DISTINCT r.seq) FROM events_rejected r
                      WHERE r.gateway = $1 AND r.journal = $4 AND r.settles
                        AND r.seq > $2 AND r.seq <= $3
                        AND NOT EXISTS (SELECT 1 FROM events e
                                         WHERE e.gateway = r.gateway AND e.journal = r.journal
                                           AND e.seq = r.seq))";
    // The settled seqs above `start`, smallest first: stored events and
    // quarantined ones that settle. The smallest $3 of the union of the
    // smallest $3 of each are the smallest $3 settled seqs, so the walk
    // never passes a gap; cut at the limit, it merely stops early.
    let walk = tx
        .prepare(
            "SELECT seq FROM (
                 (SELECT seq FROM events WHERE gateway = $1 AND journal = $4 AND seq > $2
                   ORDER BY seq LIMIT $3)
                 UNION
                 (SELECT DISTINCT seq FROM events_rejected
                   WHERE gateway = $1 AND journal = $4 AND settles AND seq > $2
                   ORDER BY seq LIMIT $3)) s
              ORDER BY seq LIMIT $3",
        )
        .await?;
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let seqs = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .collect::<Vec<u64>>()
    };
    for (g, j) in &flush.journals {
        let jb: &[u8] = &j.as_bytes()[..];
        let have = acked.get(&(g.clone(), *j)).copied().unwrap_or(0);
        let have_u = u64::try_from(have).unwrap_or(0);
        let mut start = have_u;
        // The common case needs no count: nothing was stored above the ack
        // before this flush, and its rows are exactly (ack, top], each now
        // stored (or quarantined, which settles it).
        let (n_above, keep_top) = keep
            .iter()
            .filter(|r| r.gateway == *g && r.journal == *j && r.seq > have_u)
            .fold((0u64, have_u), |(n, t), r| (n + 1, t.max(r.seq)));
        let fresh_from_ack = fresh_above.get(&(g.clone(), *j)) == Some(&have_u);
        let top = tops.get(&(g.clone(), *j)).copied().unwrap_or(have_u);
        if fresh_from_ack && n_above > 0 && keep_top == top && n_above == top - have_u {
            start = top;
        } else if top > have_u {
            let n: i64 = tx
                .query_one(count, &[&g.as_str(), &have, &to_i64(top), &jb])
                .await?
                .get(0);
            if u64::try_from(n).ok() == Some(top - have_u) {
                start = top;
            }
        }
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&g.as_str(), &to_i64(start), &WALK_LIMIT, &jb];
        let settled = seqs(tx.query(&walk, &args).await?);
        let end = contiguous_end(start, settled);
        // The highest seq stored now (a quarantined row may raise it: that
        // only sends a later duplicate through the lookup).
        let top_stored = top_kept.get(&(g, *j)).copied().unwrap_or(0);
        if end > have_u || top_stored > 0 {
            tx.execute(
                "UPDATE journals SET acked_seq = greatest(acked_seq, $3),
                                     stored_max = greatest(stored_max, $4)
                  WHERE gateway = $1 AND journal = $2",
                &[&g.as_str(), &jb, &to_i64(end), &to_i64(top_stored)],
            )
            .await?;
        }
        if end > have_u {
            // `gateways.acked_seq` (schema 1) follows the journal the
            // gateway writes now, for readers of that column.
            tx.execute(
                "UPDATE gateways SET acked_seq = $3 WHERE id = $1 AND journal = $2",
                &[&g.as_str(), &jb, &to_i64(end)],
            )
            .await?;
        }
        if end > 0 {
            stored.acks.push((g.clone(), *j, end));
        }
    }
    tx.commit().await?;
    Ok(stored)
}

/// The staging table of one connection: a flush's rows arrive here by
/// binary COPY (PostgreSQL's fast path), then one `INSERT … SELECT` moves
/// the new ones into `events`. Emptied at every commit.
const STAGING: &str = "SET LOCAL client_min_messages = warning;
    CREATE TEMP TABLE IF NOT EXISTS events_staging (
        gateway text, journal bytea, seq int8, at timestamptz, type text,
        door text, credential text, reason text, event jsonb
    ) ON COMMIT DELETE ROWS";

/// Where [`copy_rows`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyTarget {
    /// The connection's `events_staging` (central's ingest).
    Staging,
    /// `events` itself: the raw COPY limit `scripts/bench-central`
    /// measures central against (no duplicate check, no ack).
    Events,
}

/// Binary COPY of `rows` into `target` (one round trip per few KiB; the
/// event JSON is sent as `jsonb` text, parsed once by PostgreSQL).
pub async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    target: CopyTarget,
    rows: &[&Row],
) -> Result<u64, tokio_postgres::Error> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    let table = match target {
        CopyTarget::Staging => "events_staging",
        CopyTarget::Events => "events",
    };
    let sink = tx
        .copy_in(&format!(
            "COPY {table} (gateway, journal, seq, at, type, door, credential, reason, event)
             FROM STDIN BINARY"
        ))
        .await?;
    let types = [
        Type::TEXT,
        Type::BYTEA,
        Type::INT8,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
    ];
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
    for r in rows {
        // Checked to fit an i64 when decoded.
        let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
        let journal: &[u8] = &r.journal.as_bytes()[..];
        writer
            .as_mut()
            .write(&[
                &r.gateway.as_str(),
                &journal,
                &seq,
                &r.at,
                &r.kind.as_str(),
                &r.door.as_deref(),
                &r.credential.as_deref(),
                &r.reason.as_deref(),
                &JsonbText(&r.json),
            ])
            .await?;
    }
    writer.as_mut().finish().await
}

/// JSON text sent as `jsonb` in binary form (version byte 1, then the
/// text): the event is serialised once, at decode, and parsed once, by
/// PostgreSQL.
#[derive(Debug)]
struct JsonbText<'a>(&'a str);

impl tokio_postgres::types::ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Store `rows` (each `(gateway, journal, seq)` once; every journal among
/// them locked by the caller, who raises `journals.stored_max` after).
///
/// Exactly once by `(gateway, journal, seq)` although the primary key of
/// the partitioned `events` must carry `at` (migration 0005): a row above
/// `fresh_above` of its journal (the larger of its `acked_seq` and
/// `stored_max`, the highest seq ever inserted for it) cannot be in
/// `events`, and goes straight in by binary COPY — the common case, the
/// database's own fast path. Any other row (a resend, a redelivery, a
/// batch after a gap) goes by COPY into the staging table and one
/// `INSERT … SELECT`: at or below `acked_seq` it is settled and skipped,
/// in between it is looked up in `events` first.
async fn insert_rows(
    tx: &tokio_postgres::Transaction<'_>,
    rows: &[&Row],
    fresh_above: &std::collections::BTreeMap<(GatewayId, JournalId), u64>,
) -> Result<(), tokio_postgres::Error> {
    let (fresh, known): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| {
        fresh_above
            .get(&(r.gateway.clone(), r.journal))
            .is_some_and(|f| r.seq > *f)
    });
    if !fresh.is_empty() {
        copy_rows(tx, CopyTarget::Events, &fresh).await?;
    }
    if known.is_empty() {
        return Ok(());
    }
    copy_rows(tx, CopyTarget::Staging, &known).await?;
    tx.batch_execute(
        "INSERT INTO events (gateway, seq, at, type, door, credential, reason, event, journal)
         SELECT s.gateway, s.seq, s.at, s.type, s.door, s.credential, s.reason, s.event, s.journal
           FROM events_staging s
           JOIN journals j ON j.gateway = s.gateway AND j.journal = s.journal
          WHERE s.seq > j.acked_seq
            AND (s.seq > j.stored_max
                 OR NOT EXISTS (SELECT 1 FROM events e
                                 WHERE e.gateway = s.gateway AND e.journal = s.journal
                                   AND e.seq = s.seq))
         ON CONFLICT DO NOTHING;
         DELETE FROM events_staging;",
    )
    .await?;
    Ok(())
}

/// A `bytea` journal column as a [`JournalId`] (`None`: NULL, or not 16
/// bytes, which the schema's CHECK rules out).
fn journal_col(bytes: Option<Vec<u8>>) -> Option<JournalId> {
    bytes.and_then(|b| JournalId::try_from(b.as_slice()).ok())
}

/// Record that `gateway` writes `journal` now (its row is locked); a
/// change from another journal is a `journal_changed` alarm
/// (`journal_changes`): the gateway's journal was moved aside or replaced,
/// and what the old one still held needs `portier journal drain`.
async fn claim_journal(
    tx: &tokio_postgres::Transaction<'_>,
    gateway: &GatewayId,
    previous: Option<JournalId>,
    journal: JournalId,
) -> Result<(), tokio_postgres::Error> {
    let j: &[u8] = &journal.as_bytes()[..];
    tx.execute(
        "UPDATE gateways SET journal = $2,
                acked_seq = coalesce((SELECT acked_seq FROM journals
                                       WHERE gateway = $1 AND journal = $2), 0)
          WHERE id = $1",
        &[&gateway.as_str(), &j],
    )
    .await?;
    if let Some(previous) = previous {
        tracing::warn!(%gateway, %previous, %journal, "gateway writes a new journal (journal_changed)");
        tx.execute(
            "INSERT INTO journal_changes (gateway, at, previous, journal) VALUES ($1, now(), $2, $3)",
            &[&gateway.as_str(), &&previous.as_bytes()[..], &j],
        )
        .await?;
    }
    Ok(())
}

/// A gateway's status into its row (and a state transition, if it is one).
async fn store_status(
    tx: &tokio_postgres::Transaction<'_>,
    s: &super::ingest::StatusRow,
    state_before: Option<&String>,
    journal_before: Option<JournalId>,
) -> Result<(), tokio_postgres::Error> {
    let st = &s.status;
    // The status names the journal the daemon writes: the authority on
    // which one is current (a drain of an old journal sends no status).
    if let Some(j) = st.journal.filter(|j| Some(*j) != journal_before) {
        claim_journal(tx, &s.gateway, journal_before, j).await?;
    }
    let status: Value = serde_json::from_str(&s.json).unwrap_or(Value::Null);
    let to_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE gateways SET
             state = $2,
             state_since = CASE WHEN state = $2 THEN state_since ELSE now() END,
             software_version = nullif($3, ''),
             rules_version = coalesce($4, rules_version),
             rules_refused = $5,
             backlog = $6, backlog_oldest_seq = $7, backlog_oldest_at = $8,
             dropped_events = $9, status = $10, status_at = now()
         WHERE id = $1",
        &[
            &s.gateway.as_str(),
            &s.state,
            &st.version,
            &st.rules_version.map(to_i64),
            &st.rules_refused,
            &to_i64(st.backlog),
            &st.backlog_oldest_seq.map(to_i64),
            &st.backlog_oldest_at,
            &to_i64(st.dropped_events),
            &status,
        ],
    )
    .await?;
    if state_before != Some(&s.state) {
        tx.execute(
            "INSERT INTO gateway_states (gateway, at, state) VALUES ($1, now(), $2)",
            &[&s.gateway.as_str(), &s.state],
        )
        .await?;
    }
    store_readers(tx, &s.gateway, &st.readers).await
}

/// A gateway's reader inventory into `readers`: one upsert per reader
/// listed. A last will lists none and changes nothing; `online` is the
/// gateway's word, so a reader of a gateway gone offline keeps its last
/// known state beside the gateway's own `offline`.
async fn store_readers(
    tx: &tokio_postgres::Transaction<'_>,
    gateway: &GatewayId,
    readers: &[crate::status::ReaderInventory],
) -> Result<(), tokio_postgres::Error> {
    for r in readers {
        let id = r.identity.as_ref();
        let capabilities = serde_json::to_value(&r.capabilities).unwrap_or(Value::Null);
        tx.execute(
            "INSERT INTO readers (gateway, bus, address, name, vendor, model, version, serial,
                                  firmware, capabilities, online, secure_channel, updating,
                                  last_seen, last_reported)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, now())
             ON CONFLICT (gateway, bus, address) DO UPDATE SET
                 name = EXCLUDED.name,
                 vendor = coalesce(EXCLUDED.vendor, readers.vendor),
                 model = coalesce(EXCLUDED.model, readers.model),
                 version = coalesce(EXCLUDED.version, readers.version),
                 serial = coalesce(EXCLUDED.serial, readers.serial),
                 firmware = coalesce(EXCLUDED.firmware, readers.firmware),
                 capabilities = CASE WHEN EXCLUDED.capabilities = '[]'::jsonb
                                     THEN readers.capabilities ELSE EXCLUDED.capabilities END,
                 online = EXCLUDED.online,
                 secure_channel = EXCLUDED.secure_channel,
                 updating = EXCLUDED.updating,
                 last_seen = greatest(EXCLUDED.last_seen, readers.last_seen),
                 last_reported = now()",
            &[
                &gateway.as_str(),
                &r.bus,
                &i16::from(r.address),
                &r.name,
                &id.map(|i| i.vendor.clone()),
                &id.map(|i| i16::from(i.model)),
                &id.map(|i| i16::from(i.version)),
                &id.map(|i| i64::from(i.serial)),
                &id.map(|i| i.firmware.clone()),
                &capabilities,
                &r.online,
                &r.secure_channel,
                &r.updating,
                &r.last_seen,
            ],
        )
        .await?;
    }
    Ok(())
}

/// One reader as `portier central readers` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReaderRow {
    /// Gateway id.
    pub gateway: String,
    /// Bus name.
    pub bus: String,
    /// OSDP address.
    pub address: i16,
    /// Name in the gateway's config.
    pub name: String,
    /// IEEE OUI of the vendor (6 hex digits).
    pub vendor: Option<String>,
    /// Model number.
    pub model: Option<i16>,
    /// Model version.
    pub version: Option<i16>,
    /// Serial number.
    pub serial: Option<i64>,
    /// Firmware `major.minor.build`.
    pub firmware: Option<String>,
    /// Capabilities as the gateway reported them.
    pub capabilities: Value,
    /// Online at the last report.
    pub online: bool,
    /// In Secure Channel at the last report.
    pub secure_channel: bool,
    /// Offline for a firmware update at the last report.
    pub updating: bool,
    /// When it last answered its gateway.
    pub last_seen: Option<Timestamp>,
    /// When its gateway last listed it.
    pub last_reported: Timestamp,
}

/// The reader inventory, by gateway, bus and address; with `firmware`,
/// only readers whose firmware is that version or starts with it
/// followed by a dot (`1.2` matches `1.2` and `1.2.7`, not `1.20.0`).
pub async fn readers(client: &Client, firmware: Option<&str>) -> Result<Vec<ReaderRow>, DbError> {
    let rows = client
        .query(
            "SELECT gateway, bus, address, name, vendor, model, version, serial, firmware,
                    capabilities, online, secure_channel, updating, last_seen, last_reported
               FROM readers
              WHERE $1::text IS NULL OR firmware = $1 OR starts_with(firmware, $1 || '.')
              ORDER BY gateway, bus, address",
            &[&firmware],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReaderRow {
            gateway: r.get(0),
            bus: r.get(1),
            address: r.get(2),
            name: r.get(3),
            vendor: r.get(4),
            model: r.get(5),
            version: r.get(6),
            serial: r.get(7),
            firmware: r.get(8),
            capabilities: r.get(9),
            online: r.get(10),
            secure_channel: r.get(11),
            updating: r.get(12),
            last_seen: r.get(13),
            last_reported: r.get(14),
        })
        .collect())
}

/// One gateway as `portier central status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FleetRow {
    /// Gateway id.
    pub gateway: String,
    /// `online`, `offline` or `unknown`.
    pub state: String,
    /// Since when.
    pub state_since: Option<Timestamp>,
    /// Software version.
    pub version: Option<String>,
    /// Rules version in force (as the gateway reports it).
    pub rules_version: Option<i64>,
    /// Last rules refusal.
    pub rules_refused: Option<String>,
    /// Events waiting at the gateway.
    pub backlog: Option<i64>,
    /// When the oldest of them happened.
    pub backlog_oldest_at: Option<Timestamp>,
    /// Highest contiguous seq stored centrally, of the current journal.
    pub acked: i64,
    /// The journal the gateway writes now (32 hex digits; the nil id for
    /// a journal of an earlier version), if central has heard of one.
    pub journal: Option<String>,
    /// Journals of the gateway central holds events of.
    pub journals: i64,
    /// When the gateway last changed journals (a `journal_changed`
    /// alarm), if it ever did.
    pub journal_changed_at: Option<Timestamp>,
    /// The journal it wrote before that change.
    pub journal_previous: Option<String>,
    /// Events the gateway dropped (journal full).
    pub dropped_events: Option<i64>,
    /// Last message of any kind.
    pub last_seen: Option<Timestamp>,
    /// Highest rules version published to it.
    pub rules_published: Option<i64>,
    /// Records of it in `events_rejected` (the quarantine).
    pub rejected: i64,
    /// When the latest of them arrived (last repeat).
    pub rejected_last_at: Option<Timestamp>,
}

/// Every gateway central has heard from (time beacons go to these).
pub async fn gateway_ids(client: &Client) -> Result<Vec<GatewayId>, DbError> {
    let rows = client
        .query("SELECT id FROM gateways ORDER BY id", &[])
        .await?;
    ids(rows)
}

/// The fleet, by gateway id.
pub async fn fleet(client: &Client) -> Result<Vec<FleetRow>, DbError> {
    let rows = client
        .query(
            "SELECT g.id, g.state, g.state_since, g.software_version, g.rules_version,
                    g.rules_refused, g.backlog, g.backlog_oldest_at, g.acked_seq,
                    g.dropped_events, g.last_seen,
                    (SELECT max(version) FROM rules_published p WHERE p.gateway = g.id),
                    r.n, r.last_at,
                    encode(g.journal, 'hex'),
                    (SELECT count(*) FROM journals j WHERE j.gateway = g.id),
                    c.at, encode(c.previous, 'hex')
               FROM gateways g
               LEFT JOIN LATERAL (
                   SELECT count(*) AS n, max(last_at) AS last_at FROM events_rejected q
                    WHERE coalesce(q.gateway, '') = g.id) r ON true
               LEFT JOIN LATERAL (
                   SELECT at, previous FROM journal_changes c
                    WHERE c.gateway = g.id ORDER BY at DESC LIMIT 1) c ON true
              ORDER BY g.id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| FleetRow {
            gateway: r.get(0),
            state: r.get(1),
            state_since: r.get(2),
            version: r.get(3),
            rules_version: r.get(4),
            rules_refused: r.get(5),
            backlog: r.get(6),
            backlog_oldest_at: r.get(7),
            acked: r.get(8),
            dropped_events: r.get(9),
            last_seen: r.get(10),
            rules_published: r.get(11),
            rejected: r.get(12),
            rejected_last_at: r.get(13),
            journal: r.get(14),
            journals: r.get(15),
            journal_changed_at: r.get(16),
            journal_previous: r.get(17),
        })
        .collect())
}

/// One line of central's muster list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MusterRow {
    /// The gateway that saw the passage.
    pub gateway: String,
    /// Credential key.
    pub credential: String,
    /// Display name, when the event carried one.
    pub name: Option<String>,
    /// The innermost area the card is in.
    pub area: String,
    /// Since when (the passage's time on the gateway's clock).
    pub since: Timestamp,
    /// The door of that passage.
    pub door: Option<String>,
}

/// Who is inside, from the stored `presence` events (the `muster` view):
/// of one gateway and one area (the innermost area recorded) when given.
pub async fn muster(
    client: &Client,
    gateway: Option<&GatewayId>,
    area: Option<&str>,
) -> Result<Vec<MusterRow>, DbError> {
    let rows = client
        .query(
            "SELECT gateway, credential, name, area, since, door FROM muster
              WHERE ($1::text IS NULL OR gateway = $1) AND ($2::text IS NULL OR area = $2)
              ORDER BY gateway, area, since",
            &[&gateway.map(GatewayId::as_str), &area],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| MusterRow {
            gateway: r.get(0),
            credential: r.get(1),
            name: r.get(2),
            area: r.get(3),
            since: r.get(4),
            door: r.get(5),
        })
        .collect())
}

/// Alarms in `[since, until)`, oldest first, optionally of one gateway.
pub async fn alarms(
    client: &Client,
    since: Timestamp,
    until: Timestamp,
    gateway: Option<&GatewayId>,
) -> Result<Vec<Value>, DbError> {
    let rows = client
        .query(
            "SELECT gateway, at, kind, door, reason, event FROM alarms
              WHERE at >= $1 AND at < $2 AND ($3::text IS NULL OR gateway = $3)
              ORDER BY at, gateway",
            &[&since, &until, &gateway.map(GatewayId::as_str)],
        )
        .await?;
    Ok(rows.iter().map(|r| alarm_value(r, None)).collect())
}

/// An alarm row (`gateway, at, kind, door, reason, event`) as the
/// `alarms` verbs print it, with its key when it is an event's.
fn alarm_value(r: &tokio_postgres::Row, key: Option<(String, i64)>) -> Value {
    let mut v = serde_json::json!({
        "gateway": r.get::<_, String>(0),
        "at": r.get::<_, Timestamp>(1).to_string(),
        "kind": r.get::<_, String>(2),
        "door": r.get::<_, Option<String>>(3),
        "reason": r.get::<_, Option<String>>(4),
        "event": r.get::<_, Option<Value>>(5),
    });
    if let Some((journal, seq)) = key {
        v["journal"] = journal.into();
        v["seq"] = seq.into();
    }
    v
}

/// Store urgent events as they came on `<prefix>/urgent` (the copy ahead of
/// the backlog; the one in `events` follows in turn). Only the urgent types
/// are kept; a row already stored (a resend, another instance) is skipped.
/// Returns how many were new.
/// A seq further than `seq_window` beyond its journal's highest stored
/// (or acknowledged) seq is a claim, not an event, as on the events lane:
/// not kept.
pub async fn store_urgent(client: &Client, rows: &[Row], seq_window: u64) -> Result<u64, DbError> {
    let window = i64::try_from(seq_window).unwrap_or(i64::MAX);
    let mut new = 0;
    for r in rows
        .iter()
        .filter(|r| crate::event::URGENT_TYPES.contains(&r.kind.as_str()))
    {
        let journal: &[u8] = &r.journal.as_bytes()[..];
        let Ok(seq) = i64::try_from(r.seq) else {
            continue;
        };
        new += client
            .execute(
                "INSERT INTO urgent_events (gateway, journal, seq, at, type, door, credential, event)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8::text::jsonb
                  WHERE $3 <= coalesce((SELECT greatest(acked_seq, stored_max) FROM journals
                                         WHERE gateway = $1 AND journal = $2), 0) + $9
                 ON CONFLICT DO NOTHING",
                &[
                    &r.gateway.as_str(),
                    &journal,
                    &seq,
                    &r.at,
                    &r.kind,
                    &r.door,
                    &r.credential,
                    &r.json,
                    &window,
                ],
            )
            .await?;
    }
    Ok(new)
}

/// Forget urgent copies older than [`URGENT_KEPT_DAYS`] (their events are
/// in `events` by then, or their gateway is gone).
pub async fn prune_urgent(client: &Client) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "DELETE FROM urgent_events WHERE received_at < now() - make_interval(days => $1)",
            &[&URGENT_KEPT_DAYS],
        )
        .await?)
}

/// How long `urgent_events` keeps a row.
pub const URGENT_KEPT_DAYS: i32 = 7;

/// The alarm events (the types of `event::ALARM_TYPES`, stored or as
/// urgent copies) that happened at or after `since`, with their keys,
/// in the shape [`announced_alarm`] gives (at most 10 000).
pub async fn alarm_events(
    client: &Client,
    since: Timestamp,
    gateway: Option<&GatewayId>,
) -> Result<Vec<Value>, DbError> {
    let types: Vec<&str> = crate::event::ALARM_TYPES.to_vec();
    let rows = client
        .query(
            "SELECT gateway, at, type, door, reason, event, encode(journal, 'hex'), seq FROM events
              WHERE at >= $1 AND ($2::text IS NULL OR gateway = $2)
                AND (type = ANY($3)
                     OR (type = 'pd_status'
                         AND ((event->>'tamper')::boolean OR (event->>'power_failure')::boolean)))
             UNION ALL
             SELECT gateway, at, type, door, NULL, event, encode(journal, 'hex'), seq FROM urgent_events
              WHERE at >= $1 AND ($2::text IS NULL OR gateway = $2)
             ORDER BY 2 LIMIT 10000",
            &[&since, &gateway.map(GatewayId::as_str), &types],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| alarm_value(r, Some((r.get(6), r.get(7)))))
        .collect())
}

/// The alarm an `portier_alarms` notification announces (its payload:
/// `{gateway, journal, seq, at}`), shaped as [`alarms`] prints it; `None`
/// for a payload that names nothing stored.
pub async fn announced_alarm(client: &Client, payload: &str) -> Result<Option<Value>, DbError> {
    #[derive(serde::Deserialize)]
    struct Key {
        gateway: String,
        journal: String,
        seq: i64,
        at: Timestamp,
    }
    let Ok(key) = serde_json::from_str::<Key>(payload) else {
        tracing::warn!(payload, "alarm notification not understood");
        return Ok(None);
    };
    let Ok(journal) = hex::decode(&key.journal) else {
        return Ok(None);
    };
    let row = client
        .query_opt(
            "SELECT gateway, at, type, door, reason, event FROM events
              WHERE gateway = $1 AND journal = $2 AND seq = $3 AND at = $4
             UNION ALL
             SELECT gateway, at, type, door, NULL, event FROM urgent_events
              WHERE gateway = $1 AND journal = $2 AND seq = $3
             LIMIT 1",
            &[&key.gateway, &journal, &key.seq, &key.at],
        )
        .await?;
    Ok(row.map(|r| alarm_value(&r, Some((key.journal, key.seq)))))
}

/// What central last published to a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Its version.
    pub version: u64,
    /// The building it names.
    pub building: String,
}

/// The next rules version for `gateway`: above everything published and
/// above what the gateway reports in force.
pub async fn next_version(client: &Client, gateway: &GatewayId) -> Result<u64, DbError> {
    let v: i64 = client
        .query_one(
            "SELECT greatest(
                 (SELECT coalesce(max(version), 0) FROM rules_published WHERE gateway = $1),
                 (SELECT coalesce(max(rules_version), 0) FROM gateways WHERE id = $1)) + 1",
            &[&gateway.as_str()],
        )
        .await?
        .get(0);
    Ok(u64::try_from(v).unwrap_or(1))
}

/// The latest rules published to `gateway`, if any.
pub async fn last_published(
    client: &Client,
    gateway: &GatewayId,
) -> Result<Option<Published>, DbError> {
    let row = client
        .query_opt(
            "SELECT version, building FROM rules_published WHERE gateway = $1
              ORDER BY version DESC LIMIT 1",
            &[&gateway.as_str()],
        )
        .await?;
    Ok(row.map(|r| Published {
        version: u64::try_from(r.get::<_, i64>(0)).unwrap_or(0),
        building: r.get(1),
    }))
}

/// What a publication was.
#[derive(Debug, Clone)]
pub struct Publication<'a> {
    /// The gateway.
    pub gateway: &'a GatewayId,
    /// The new version.
    pub version: u64,
    /// `snapshot` or `delta`.
    pub kind: &'a str,
    /// For a delta, its base.
    pub base_version: Option<u64>,
    /// The building.
    pub building: &'a str,
    /// Credentials in it (snapshot) or changed by it (delta).
    pub credentials: usize,
    /// SHA-256 of the signed blob, hex.
    pub digest: String,
    /// The signed blob (kept for the last snapshot and the deltas after
    /// it: what a repair rebuilds from).
    pub blob: &'a [u8],
    /// Whether central published it by itself (a repair), not an operator.
    pub repair: bool,
}

/// Record a publication and the cards the gateway's rules now name: a
/// snapshot replaces them, a delta adds to them.
pub async fn record_published(
    client: &mut Client,
    p: &Publication<'_>,
    cards: &[String],
) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    record_published_in(&tx, p, cards).await?;
    tx.commit().await?;
    Ok(())
}

/// [`record_published`] inside the caller's transaction.
pub async fn record_published_in(
    tx: &tokio_postgres::Transaction<'_>,
    p: &Publication<'_>,
    cards: &[String],
) -> Result<(), DbError> {
    let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    tx.execute(
        "INSERT INTO rules_published
             (gateway, version, kind, base_version, building, credentials, digest, blob, repair)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &p.gateway.as_str(),
            &v(p.version),
            &p.kind,
            &p.base_version.map(v),
            &p.building,
            &i64::try_from(p.credentials).unwrap_or(i64::MAX),
            &p.digest,
            &p.blob,
            &p.repair,
        ],
    )
    .await?;
    if p.kind == "snapshot" {
        tx.execute(
            "DELETE FROM gateway_credentials WHERE gateway = $1",
            &[&p.gateway.as_str()],
        )
        .await?;
        // Only the last snapshot and what follows it are rebuilt from.
        tx.execute(
            "UPDATE rules_published SET blob = NULL
              WHERE gateway = $1 AND version < $2 AND blob IS NOT NULL",
            &[&p.gateway.as_str(), &v(p.version)],
        )
        .await?;
    }
    tx.execute(
        "INSERT INTO gateway_credentials (gateway, card)
         SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        &[&p.gateway.as_str(), &cards],
    )
    .await?;
    Ok(())
}

/// Why a gateway gets its rules again (`rules_repairs.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairReason {
    /// It refused a delta: "a full snapshot is needed".
    DeltaRefused,
    /// It came back online reporting a version below what was published.
    BehindAfterReconnect,
}

impl RepairReason {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            Self::DeltaRefused => "delta_refused",
            Self::BehindAfterReconnect => "behind_after_reconnect",
        }
    }
}

/// A gateway whose rules central should publish again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairCandidate {
    /// The gateway.
    pub gateway: GatewayId,
    /// The version it reports in force.
    pub rules_version: Option<u64>,
    /// The latest publication an operator made (the "once" key).
    pub for_version: u64,
    /// Why.
    pub reason: RepairReason,
}

/// The text of the gateway's refusal that only a full snapshot cures
/// (`rules::envelope::DeltaError::BaseMismatch`).
pub const NEEDS_SNAPSHOT: &str = "a full snapshot is needed";

/// Gateways to repair: online, reporting a version below the highest
/// published, and either refusing a delta for want of a full snapshot, or
/// online again (after the latest publication) for longer than `grace`
/// seconds (the broker's queued deltas and retained snapshot had their
/// chance); each at most once per operator publication.
pub async fn repair_candidates(
    client: &Client,
    grace_seconds: i32,
) -> Result<Vec<RepairCandidate>, DbError> {
    let rows = client
        .query(
            "SELECT g.id, g.rules_version, o.version,
                    coalesce(g.rules_refused LIKE '%' || $2 || '%', false)
               FROM gateways g
               JOIN LATERAL (SELECT version, published_at FROM rules_published p
                              WHERE p.gateway = g.id ORDER BY version DESC LIMIT 1) p ON true
               JOIN LATERAL (SELECT version FROM rules_published p
                              WHERE p.gateway = g.id AND NOT p.repair
                              ORDER BY version DESC LIMIT 1) o ON true
              WHERE g.state = 'online'
                AND coalesce(g.rules_version, 0) < p.version
                AND (g.rules_refused LIKE '%' || $2 || '%'
                     OR (g.state_since > p.published_at
                         AND g.state_since < now() - make_interval(secs => $1)))
                AND NOT EXISTS (SELECT 1 FROM rules_repairs r
                                 WHERE r.gateway = g.id AND r.for_version = o.version)
              ORDER BY g.id",
            &[&f64::from(grace_seconds), &NEEDS_SNAPSHOT],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(RepairCandidate {
                gateway: r.get::<_, String>(0).parse().ok()?,
                rules_version: r
                    .get::<_, Option<i64>>(1)
                    .and_then(|v| u64::try_from(v).ok()),
                for_version: u64::try_from(r.get::<_, i64>(2)).ok()?,
                reason: if r.get::<_, bool>(3) {
                    RepairReason::DeltaRefused
                } else {
                    RepairReason::BehindAfterReconnect
                },
            })
        })
        .collect())
}

/// What a repair rebuilds from: the last snapshot's blob (if central
/// still holds it) and the deltas published after it, in order.
#[derive(Debug, Clone, Default)]
pub struct RulesLineage {
    /// The last snapshot, as published.
    pub snapshot: Option<Vec<u8>>,
    /// Its version.
    pub snapshot_version: Option<u64>,
    /// Later deltas, by version.
    pub deltas: Vec<Vec<u8>>,
}

/// Claim the repair of `c` (a row in `rules_repairs`; another instance's
/// claim wins) inside `tx`; `false` when it was claimed already.
pub async fn claim_repair(
    tx: &tokio_postgres::Transaction<'_>,
    c: &RepairCandidate,
    version: Option<u64>,
    detail: &str,
) -> Result<bool, DbError> {
    let v = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    let n = tx
        .execute(
            "INSERT INTO rules_repairs (gateway, for_version, reason, rules_version, version, detail)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                &c.gateway.as_str(),
                &v(c.for_version),
                &c.reason.code(),
                &c.rules_version.map(v),
                &version.map(v),
                &detail,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// The last snapshot and later deltas central published to `gateway`.
pub async fn rules_lineage(client: &Client, gateway: &GatewayId) -> Result<RulesLineage, DbError> {
    let snap = client
        .query_opt(
            "SELECT version, blob FROM rules_published
              WHERE gateway = $1 AND kind = 'snapshot' ORDER BY version DESC LIMIT 1",
            &[&gateway.as_str()],
        )
        .await?;
    let Some(snap) = snap else {
        return Ok(RulesLineage::default());
    };
    let version: i64 = snap.get(0);
    let deltas = client
        .query(
            "SELECT blob FROM rules_published
              WHERE gateway = $1 AND kind = 'delta' AND version > $2 ORDER BY version",
            &[&gateway.as_str(), &version],
        )
        .await?;
    // A delta without its blob (published before schema 6) leaves
    // nothing to rebuild from: no snapshot.
    let deltas: Option<Vec<Vec<u8>>> = deltas.iter().map(|r| r.get(0)).collect();
    let snapshot: Option<Vec<u8>> = snap.get(1);
    Ok(RulesLineage {
        snapshot: snapshot.filter(|_| deltas.is_some()),
        snapshot_version: u64::try_from(version).ok(),
        deltas: deltas.unwrap_or_default(),
    })
}

/// Gateways whose rules name `card`.
pub async fn gateways_with_card(client: &Client, card: &str) -> Result<Vec<GatewayId>, DbError> {
    ids(client
        .query(
            "SELECT gateway FROM gateway_credentials WHERE card = $1 ORDER BY gateway",
            &[&card],
        )
        .await?)
}

/// Every gateway central has published rules to.
pub async fn gateways_with_rules(client: &Client) -> Result<Vec<GatewayId>, DbError> {
    ids(client
        .query(
            "SELECT DISTINCT gateway FROM rules_published ORDER BY gateway",
            &[],
        )
        .await?)
}

fn ids(rows: Vec<tokio_postgres::Row>) -> Result<Vec<GatewayId>, DbError> {
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, String>(0).parse().ok())
        .collect())
}

/// Remember a block for every later snapshot (a newer reason replaces an
/// older one).
pub async fn record_block(client: &Client, card: &str, reason: &str) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO card_blocks (card, reason) VALUES ($1, $2)
             ON CONFLICT (card) DO UPDATE SET reason = excluded.reason, blocked_at = now()",
            &[&card, &reason],
        )
        .await?;
    Ok(())
}

/// Forget a block; whether there was one.
pub async fn remove_block(client: &Client, card: &str) -> Result<bool, DbError> {
    Ok(client
        .execute("DELETE FROM card_blocks WHERE card = $1", &[&card])
        .await?
        > 0)
}

/// Every card blocked through central: card → reason.
pub async fn blocked_cards(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, String>, DbError> {
    Ok(client
        .query("SELECT card, reason FROM card_blocks", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Record a command sent.
pub async fn record_command(
    client: &Client,
    command: &crate::command::Command,
) -> Result<(), DbError> {
    let action = serde_json::to_value(&command.action).unwrap_or(Value::Null);
    client
        .execute(
            "INSERT INTO commands (id, gateway, action, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &command.id,
                &command.gateway,
                &action,
                &command.issued_at,
                &command.expires_at,
            ],
        )
        .await?;
    Ok(())
}

/// The gateway's answer to command `id` (its `remote_action` or
/// `command_refused` event), once stored.
pub async fn command_result(
    client: &Client,
    gateway: &GatewayId,
    id: &str,
    since: Timestamp,
) -> Result<Option<Value>, DbError> {
    let row = client
        .query_opt(
            "SELECT event FROM events
              WHERE gateway = $1 AND at >= $3
                AND ((type = 'remote_action' AND event->>'command' = $2)
                  OR (type = 'command_refused' AND event->>'id' = $2))
              ORDER BY seq LIMIT 1",
            &[&gateway.as_str(), &id, &since],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// What a gateway journaled about a reader command since `since`: its
/// `reader_*` events (by their `command` field), a refusal of the command,
/// and the gateway's starts (a restart ends a reader job), each as
/// (journal, seq, event), in journal order.
pub async fn reader_command_events(
    client: &Client,
    gateway: &GatewayId,
    id: &str,
    since: Timestamp,
) -> Result<Vec<(Vec<u8>, i64, Value)>, DbError> {
    let rows = client
        .query(
            "SELECT journal, seq, event FROM events
              WHERE gateway = $1 AND at >= $3
                AND ((type LIKE 'reader\\_%' AND event->>'command' = $2)
                  OR (type = 'command_refused' AND event->>'id' = $2)
                  OR type = 'daemon_started')
              ORDER BY journal, seq LIMIT 1000",
            &[&gateway.as_str(), &id, &since],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Run a user's query (`push --from-sql`) and read its rows as credential
/// records (every column as text, as PostgreSQL prints it).
///
/// Guarantees: exactly one statement runs (PostgreSQL's own parser checks
/// it: the text is prepared first, and a prepared statement holds one
/// command, so `SELECT 1; DELETE …` is refused before anything runs); it
/// runs in a `READ ONLY` transaction that is rolled back afterwards, so a
/// write (`DELETE`, `INSERT`, `UPDATE`, a writing function, `DO`) fails
/// with SQLSTATE 25006 and changes nothing.
pub async fn query_records(
    client: &mut Client,
    sql: &str,
) -> Result<Vec<super::import::Record>, DbError> {
    use tokio_postgres::SimpleQueryMessage;
    let tx = client.build_transaction().read_only(true).start().await?;
    if let Err(e) = tx.prepare(sql).await {
        if e.code() == Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR)
            && e.as_db_error()
                .is_some_and(|d| d.message().contains("multiple commands"))
        {
            return Err(DbError::FromSql(FromSqlError::NotOneStatement));
        }
        return Err(DbError::FromSql(FromSqlError::Refused(e)));
    }
    let messages = tx
        .simple_query(sql)
        .await
        .map_err(|e| DbError::FromSql(FromSqlError::Refused(e)))?;
    let mut out = Vec::new();
    for m in messages {
        if let SimpleQueryMessage::Row(row) = m {
            let rec = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        c.name().to_owned(),
                        row.get(i).map(|v| Value::String(v.to_owned())),
                    )
                })
                .collect();
            out.push(rec);
        }
    }
    // Nothing to keep: a read-only transaction is rolled back.
    let _ = tx.rollback().await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// The newest `alarms` view lists exactly the event types the code
    /// calls alarms (`event::ALARM_TYPES`): a new alarm type without a
    /// migration fails here.
    #[test]
    fn the_alarms_view_lists_the_code_s_alarm_types() {
        let sql = MIGRATIONS
            .iter()
            .rev()
            .map(|m| m.1)
            .find(|sql| sql.contains("VIEW alarms"))
            .unwrap();
        let listed = |from: &str, marker: &str| -> Vec<String> {
            let at = &sql[sql.find(from).unwrap()..];
            let list = &at[at.find(marker).unwrap() + marker.len()..];
            let list = &list[..list.find(')').unwrap()];
            let mut types: Vec<String> = list
                .split(',')
                .map(|t| t.trim().trim_matches('\'').to_owned())
                .collect();
            types.sort_unstable();
            types
        };
        let mut in_code: Vec<String> = crate::event::ALARM_TYPES
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        in_code.sort_unstable();
        assert_eq!(listed("VIEW alarms", "type IN ("), in_code);
        // The trigger that announces alarms to `alarms --follow`.
        assert_eq!(
            listed("TRIGGER events_alarm_notify", "NEW.type IN ("),
            in_code
        );
    }

    /// Every file of `migrations/central/` is in [`MIGRATIONS`], numbered
    /// by its prefix, in order.
    #[test]
    fn every_migration_file_is_applied() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/central");
        let mut files: Vec<(i32, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                let n = name.split('_').next().unwrap().parse().unwrap();
                (n, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        let known: Vec<(i32, String)> = MIGRATIONS
            .iter()
            .map(|(v, s)| (*v, (*s).to_owned()))
            .collect();
        assert_eq!(files, known);
        assert!(
            known
                .iter()
                .enumerate()
                .all(|(i, (v, _))| *v == i as i32 + 1)
        );
    }
}
