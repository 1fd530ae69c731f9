-- Portier central, schema 1: events, the fleet, rules published, alarms.
-- Applied by `portier central` at start, in one transaction, recorded in
-- central_schema. Never edit an applied migration: add the next file.

-- Every gateway event, once: (gateway, seq) is the key the gateway's
-- journal guarantees is never reused, so redeliveries are no-ops.
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
    PRIMARY KEY (gateway, seq)
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_credential ON events (credential, at) WHERE credential IS NOT NULL;

-- The fleet: one row per gateway, from its retained status (and last will).
-- acked_seq is the highest contiguous seq stored here: the ack we publish.
CREATE TABLE gateways (
    id                 text PRIMARY KEY,
    acked_seq          bigint      NOT NULL DEFAULT 0,
    state              text        NOT NULL DEFAULT 'unknown',
    state_since        timestamptz,
    software_version   text,
    rules_version      bigint,
    rules_refused      text,
    backlog            bigint,
    backlog_oldest_seq bigint,
    backlog_oldest_at  timestamptz,
    dropped_events     bigint,
    status             jsonb,
    status_at          timestamptz,
    last_seen          timestamptz
);

-- Online/offline transitions (the offline ones are alarms).
CREATE TABLE gateway_states (
    gateway text        NOT NULL,
    at      timestamptz NOT NULL,
    state   text        NOT NULL
);
CREATE INDEX gateway_states_at ON gateway_states (at);

-- Every signed snapshot and delta published, per gateway; the next version
-- is one more than the highest here (or than the gateway reports).
CREATE TABLE rules_published (
    gateway      text        NOT NULL,
    version      bigint      NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('snapshot', 'delta')),
    base_version bigint,
    building     text        NOT NULL,
    credentials  bigint      NOT NULL,
    digest       text        NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, version)
);

-- Which cards the gateway's rules name (from the last snapshot pushed, plus
-- deltas): `block --card` without --gateway goes to these gateways.
CREATE TABLE gateway_credentials (
    gateway text NOT NULL,
    card    text NOT NULL,
    PRIMARY KEY (gateway, card)
);
CREATE INDEX gateway_credentials_card ON gateway_credentials (card);

-- Cards blocked through central (lost, stolen, penalty): every later
-- snapshot carries the block, whatever the registries' export says.
CREATE TABLE card_blocks (
    card       text PRIMARY KEY,
    reason     text        NOT NULL CHECK (reason IN ('lost', 'stolen', 'penalty')),
    blocked_at timestamptz NOT NULL DEFAULT now()
);

-- Signed commands sent, for the audit trail.
CREATE TABLE commands (
    id         text PRIMARY KEY,
    gateway    text        NOT NULL,
    action     jsonb       NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Alarms by time: forced and held-open doors, tamper, readers and gateways
-- offline, duress, clock trouble, rules refused, journal full.
CREATE VIEW alarms AS
    SELECT gateway, at, type AS kind, door, reason, event
      FROM events
     WHERE type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                    'clock_went_back', 'rules_refused', 'journal_full', 'duress',
                    'command_refused')
        OR (type = 'pd_status' AND ((event->>'tamper')::boolean OR (event->>'power_failure')::boolean))
    UNION ALL
    SELECT gateway, at, 'gateway_offline', NULL, NULL, NULL
      FROM gateway_states
     WHERE state = 'offline';
