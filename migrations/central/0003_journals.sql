-- Portier central, schema 3: journal identities. A gateway's sequence
-- numbers are unique within one journal, not for ever: a journal moved
-- aside (the recovery from damaged commits), a replaced gateway with the
-- same id or a new SD card starts again at 1. Every event batch names its
-- journal (a random 128-bit id, 16 bytes here); events are stored under
-- (gateway, journal, seq), and the contiguous ack is kept per journal.
--
-- Everything stored before this schema came from journals without an id:
-- it is the nil journal (16 zero bytes), which is also what a gateway of
-- an earlier version, or a journal it wrote, sends. So such a gateway
-- goes on where it was after the upgrade.
--
-- Cost: the new column has a constant default (no table rewrite); the
-- new primary key is one index build over `events`.

ALTER TABLE events
    ADD COLUMN journal bytea NOT NULL DEFAULT '\x00000000000000000000000000000000'::bytea
        CHECK (length(journal) = 16);
ALTER TABLE events ALTER COLUMN journal DROP DEFAULT;
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (gateway, journal, seq);

-- One row per journal of a gateway: acked_seq is the highest contiguous
-- seq of that journal stored (or settled) here, the ack published for it.
CREATE TABLE journals (
    gateway    text        NOT NULL,
    journal    bytea       NOT NULL CHECK (length(journal) = 16),
    acked_seq  bigint      NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, journal)
);
INSERT INTO journals (gateway, journal, acked_seq, first_seen, last_seen)
    SELECT g.id, '\x00000000000000000000000000000000'::bytea, g.acked_seq,
           coalesce(g.last_seen, now()), coalesce(g.last_seen, now())
      FROM gateways g
     WHERE g.acked_seq > 0 OR EXISTS (SELECT 1 FROM events e WHERE e.gateway = g.id);

-- The journal the gateway writes now (from its status, or its first
-- batch, or a batch of a journal not seen before). gateways.acked_seq
-- (schema 1) now follows this journal's journals.acked_seq.
ALTER TABLE gateways ADD COLUMN journal bytea CHECK (length(journal) = 16);
UPDATE gateways SET journal = '\x00000000000000000000000000000000'::bytea
 WHERE id IN (SELECT gateway FROM journals);

-- Every change of a gateway's journal: an alarm (`journal_changed`), since
-- the old journal may still hold events central never got
-- (`portier journal drain` delivers them).
CREATE TABLE journal_changes (
    gateway  text        NOT NULL,
    at       timestamptz NOT NULL,
    previous bytea       NOT NULL,
    journal  bytea       NOT NULL
);
CREATE INDEX journal_changes_gateway ON journal_changes (gateway, at);

-- The quarantine per journal: an event's seq settles (or is out of the
-- window of) its own journal. NULL for whole messages (no journal read).
ALTER TABLE events_rejected ADD COLUMN journal bytea CHECK (length(journal) = 16);
UPDATE events_rejected SET journal = '\x00000000000000000000000000000000'::bytea
 WHERE seq IS NOT NULL;
ALTER TABLE events_rejected ADD CHECK (NOT settles OR journal IS NOT NULL);
DROP INDEX events_rejected_once;
CREATE UNIQUE INDEX events_rejected_once
    ON events_rejected (coalesce(gateway, ''), coalesce(journal, '\x'::bytea), reason, digest);
DROP INDEX events_rejected_settled;
CREATE INDEX events_rejected_settled ON events_rejected (gateway, journal, seq) WHERE settles;

-- Alarms gain journal changes (kind `journal_changed`, the previous and
-- the new journal as `event`), and quarantined records their journal.
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
                              'detail', detail, 'repeats', repeats, 'last_at', last_at,
                              'journal', encode(journal, 'hex'))
      FROM events_rejected
    UNION ALL
    SELECT gateway, at, 'journal_changed', NULL, NULL,
           jsonb_build_object('previous', encode(previous, 'hex'),
                              'journal', encode(journal, 'hex'))
      FROM journal_changes;
