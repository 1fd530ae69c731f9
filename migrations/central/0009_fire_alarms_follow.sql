-- Portier central, schema 9: fire alarms, the urgent lane, and alarms as
-- they are stored.
--
-- The alarms view gains the gateway's fire-alarm events (`fire_alarm` on
-- and off, `fire_alarm_input_offline`).
--
-- Urgent events (a duress PIN, a fire alarm going off) reach central twice:
-- at once on `<prefix>/urgent`, read on a connection of central's own
-- (never behind a backlog), and later in turn on `<prefix>/events`, which
-- is what is acknowledged and kept. The first copy lands in
-- `urgent_events` (one row per gateway, journal and seq; a second instance
-- or a resend inserts nothing); the alarms view shows it until the copy in
-- `events` is there. Rows older than 7 days are pruned by central.
--
-- Every alarm inserted into `events` or `urgent_events` is announced on
-- the channel `portier_alarms` (NOTIFY, delivered when its transaction
-- commits, so a listener never sees an alarm that is not stored) with its
-- key as JSON: {gateway, journal (hex), seq, at}. `portier central alarms
-- --follow` listens there and prints each key once.

CREATE TABLE urgent_events (
    gateway     text        NOT NULL,
    journal     bytea       NOT NULL CHECK (length(journal) = 16),
    seq         bigint      NOT NULL,
    at          timestamptz NOT NULL,
    type        text        NOT NULL,
    door        text,
    credential  text,
    event       jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, journal, seq)
);

CREATE OR REPLACE VIEW alarms AS
    SELECT gateway, at, type AS kind, door, reason, event
      FROM events
     WHERE type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                    'clock_went_back', 'clock_implausible', 'clock_untrusted',
                    'signed_time_refused', 'time_beacon_refused', 'door_mode_withheld',
                    'disk_full', 'rules_refused', 'rules_untrusted', 'journal_full',
                    'journal_record_skipped', 'event_oversized', 'uplink_message_refused',
                    'ack_out_of_range', 'admin_login_failed', 'admin_unavailable',
                    'duress', 'command_refused', 'fire_alarm',
                    'fire_alarm_input_offline')
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
      FROM journal_changes
    UNION ALL
    SELECT gateway, at, 'rules_repushed', NULL, reason,
           jsonb_build_object('rules_version', rules_version, 'version', version,
                              'for_version', for_version, 'detail', detail)
      FROM rules_repairs
    UNION ALL
    SELECT u.gateway, u.at, u.type, u.door, NULL, u.event
      FROM urgent_events u
     WHERE NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.gateway = u.gateway AND e.journal = u.journal
                          AND e.seq = u.seq AND e.at = u.at);


CREATE FUNCTION portier_alarm_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portier_alarms',
                      json_build_object('gateway', NEW.gateway,
                                        'journal', encode(NEW.journal, 'hex'),
                                        'seq', NEW.seq,
                                        'at', NEW.at)::text);
    RETURN NULL;
END $$;

-- The same types as the view (a test holds both to event::ALARM_TYPES).
CREATE TRIGGER events_alarm_notify AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                        'clock_went_back', 'clock_implausible', 'clock_untrusted',
                        'signed_time_refused', 'time_beacon_refused', 'door_mode_withheld',
                        'disk_full', 'rules_refused', 'rules_untrusted', 'journal_full',
                        'journal_record_skipped', 'event_oversized', 'uplink_message_refused',
                        'ack_out_of_range', 'admin_login_failed', 'admin_unavailable',
                        'duress', 'command_refused', 'fire_alarm',
                        'fire_alarm_input_offline')
          OR (NEW.type = 'pd_status'
              AND ((NEW.event->>'tamper')::boolean OR (NEW.event->>'power_failure')::boolean)))
    EXECUTE FUNCTION portier_alarm_notify();

CREATE TRIGGER urgent_events_notify AFTER INSERT ON urgent_events FOR EACH ROW
    EXECUTE FUNCTION portier_alarm_notify();
