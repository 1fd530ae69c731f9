-- Portier central, schema 5: `events` partitioned by month of `at` (UTC),
-- so that retention ([retention] days) drops whole months instead of
-- deleting billions of rows, and every index stays the size of a month.
--
-- PostgreSQL cannot turn a plain table into a partitioned one in place:
-- the old table is renamed, a partitioned `events` with the same columns
-- is created, the rows are moved (one rewrite of the table: plan a
-- maintenance window for a large one), the views that read `events` are
-- recreated on the new table, and the old table is dropped.
--
-- Exactly once, with the partition key in every unique index: the primary
-- key must include `at`, so it is (gateway, journal, seq, at). A gateway's
-- event never changes in its journal: a resend or a broker redelivery
-- carries the same `at` and conflicts on that key. Uniqueness of
-- (gateway, journal, seq) itself, which the key no longer enforces, is
-- kept by central's one insert path (`db::store`), under the lock of the
-- journal's row that every flush takes: a row at or below the journal's
-- acked_seq is never inserted (it is settled), a row above
-- journals.stored_max (the highest seq ever inserted for the journal) is
-- new, and only a row between the two is looked up in `events` first.
-- So a second event claiming a stored seq with another `at` is dropped as
-- before (ON CONFLICT (gateway, journal, seq) DO NOTHING did the same).
-- A dropped month's events come back only if their seqs are above the
-- ack (the ack held behind a gap, e.g. a quarantined row) and a gateway
-- sends them again; they then land in their (dropped) month's place, the
-- default partition, and the next retention run removes them again.

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER INDEX events_pkey RENAME TO events_unpartitioned_pkey;
ALTER INDEX events_at RENAME TO events_unpartitioned_at;
ALTER INDEX events_credential RENAME TO events_unpartitioned_credential;

CREATE TABLE events (
    gateway     text        NOT NULL,
    seq         bigint      NOT NULL,
    at          timestamptz NOT NULL,
    type        text        NOT NULL,
    door        text,
    credential  text,
    reason      text,
    event       jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    journal     bytea       NOT NULL CHECK (length(journal) = 16),
    PRIMARY KEY (gateway, journal, seq, at)
) PARTITION BY RANGE (at);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_credential ON events (credential, at) WHERE credential IS NOT NULL;
-- Events whose month has no partition (a gateway clock years off) land
-- here; creating a month's partition moves its rows out of it.
CREATE TABLE events_default PARTITION OF events DEFAULT;

-- The highest seq ever inserted per journal (see above).
ALTER TABLE journals ADD COLUMN stored_max bigint NOT NULL DEFAULT 0;

-- The partition of the UTC month holding `t` (events_YYYY_MM), created if
-- missing: rows of that month waiting in events_default move into it
-- first. Central calls it for this month and the next three at start and
-- every hour; instances serialise on an advisory lock.
CREATE FUNCTION portier_events_partition(t timestamptz) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := (date_trunc('month', t AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
    name text := 'events_' || to_char(t AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    PERFORM pg_advisory_xact_lock(8030898258163361394);
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM events_default WHERE at >= %L AND at < %L RETURNING *)
                    INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN name;
END
$$;

-- Partitions for the months the stored events fall in (twenty years back
-- to a year ahead; anything further stays in events_default), and for
-- this month and the next three.
SELECT portier_events_partition(m)
  FROM (SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS m
          FROM events_unpartitioned
         WHERE at >= now() - interval '20 years' AND at < now() + interval '1 year'
        UNION
        SELECT now() + make_interval(months => k) FROM generate_series(0, 3) k) months
 ORDER BY m;

INSERT INTO events (gateway, seq, at, type, door, credential, reason, event, received_at, journal)
    SELECT gateway, seq, at, type, door, credential, reason, event, received_at, journal
      FROM events_unpartitioned;
UPDATE journals j SET stored_max = m.seq
  FROM (SELECT gateway, journal, max(seq) AS seq FROM events_unpartitioned
         GROUP BY gateway, journal) m
 WHERE j.gateway = m.gateway AND j.journal = m.journal;

-- The alarms view, as in schema 4 (same types), on the partitioned table.
CREATE OR REPLACE VIEW alarms AS
    SELECT gateway, at, type AS kind, door, reason, event
      FROM events
     WHERE type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                    'clock_went_back', 'clock_implausible', 'clock_untrusted',
                    'signed_time_refused', 'time_beacon_refused', 'door_mode_withheld',
                    'disk_full', 'rules_refused', 'rules_untrusted', 'journal_full',
                    'journal_record_skipped', 'event_oversized', 'uplink_message_refused',
                    'ack_out_of_range', 'admin_login_failed', 'admin_unavailable',
                    'duress', 'command_refused')
        OR (type = 'pd_status' AND ((event->>'tamper')::boolean OR (event->>'power_failure')::boolean))
    UNION ALL
    SELECT gateway, at, 'gateway_offline', NULL, NULL, NULL
      FROM gateway_states
     WHERE state = 'offline'
    UNION ALL
    SELECT coalesce(gateway, ''), received_at, 'event_rejected', NULL, reason,
           jsonb_build_object('seq', seq, 'length', length, 'topic', topic,
                              'detail', detail, 'repeats', repeats, 'last_at', last_at,
                              'journal', encode(journal, 'hex'))
      FROM events_rejected
    UNION ALL
    SELECT gateway, at, 'journal_changed', NULL, NULL,
           jsonb_build_object('previous', encode(previous, 'hex'),
                              'journal', encode(journal, 'hex'))
      FROM journal_changes;

DROP TABLE events_unpartitioned;
