-- Portier central, schema 2: the quarantine. One bad record never stops a
-- flush: a message central cannot read (oversized, undecodable, another
-- gateway's name in it, a topic that names no gateway), an event without
-- a usable seq / at / type, a seq too far beyond the gateway's ack
-- ([ingest] seq_window), or a row PostgreSQL refuses even after escaping
-- is recorded here, and the rest of the flush is stored.
--
-- `settles`: the record is the gateway's own event at `seq`, which central
-- can never store in `events` (bad_event, refused_by_database): the
-- contiguous-ack walk counts the seq as done, so delivery is never stuck.
-- A seq beyond the window is a claim, not an event: it never settles.
-- `raw` is the record's first 4 KiB (a message's bytes, or one event as
-- JSON), `length` its full length, `digest` its SHA-256: a redelivery of
-- the same record counts `repeats` up instead of adding a row.
CREATE TABLE events_rejected (
    id          bigserial   PRIMARY KEY,
    gateway     text,
    topic       text        NOT NULL,
    seq         bigint,
    reason      text        NOT NULL CHECK (reason IN (
                    'oversized', 'undecodable', 'wrong_gateway', 'bad_topic',
                    'bad_event', 'seq_out_of_window', 'refused_by_database')),
    settles     boolean     NOT NULL,
    length      bigint      NOT NULL,
    raw         bytea       NOT NULL,
    digest      bytea       NOT NULL,
    detail      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    last_at     timestamptz NOT NULL DEFAULT now(),
    repeats     bigint      NOT NULL DEFAULT 1,
    CHECK (NOT settles OR seq IS NOT NULL)
);
CREATE UNIQUE INDEX events_rejected_once ON events_rejected (coalesce(gateway, ''), reason, digest);
CREATE INDEX events_rejected_settled ON events_rejected (gateway, seq) WHERE settles;
CREATE INDEX events_rejected_received ON events_rejected (received_at);

-- Alarms gain every quarantined record (kind `event_rejected`, the reason
-- code as `reason`, seq / length / topic / detail / repeats as `event`).
CREATE OR REPLACE VIEW alarms AS
    SELECT gateway, at, type AS kind, door, reason, event
      FROM events
     WHERE type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                    'clock_went_back', 'rules_refused', 'journal_full', 'duress',
                    'command_refused')
        OR (type = 'pd_status' AND ((event->>'tamper')::boolean OR (event->>'power_failure')::boolean))
    UNION ALL
    SELECT gateway, at, 'gateway_offline', NULL, NULL, NULL
      FROM gateway_states
     WHERE state = 'offline'
    UNION ALL
    SELECT coalesce(gateway, ''), received_at, 'event_rejected', NULL, reason,
           jsonb_build_object('seq', seq, 'length', length, 'topic', topic,
                              'detail', detail, 'repeats', repeats, 'last_at', last_at)
      FROM events_rejected;
