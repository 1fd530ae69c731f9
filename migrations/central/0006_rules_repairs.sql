-- Portier central, schema 6: self-healing rules. Central keeps the signed
-- blob of the last snapshot it published to each gateway and of the
-- deltas after it (`rules_published.blob`; older snapshots' blobs are
-- cleared when a new one is recorded), so that it can rebuild the full
-- snapshot a gateway should hold. A gateway that refused a delta ("a full
-- snapshot is needed") or came back online behind what was published gets
-- that snapshot at a new version, automatically and once per operator
-- publication: one row here per (gateway, for_version), where for_version
-- is the latest publication an operator made (`push`, `block`, `unblock`),
-- never a repair itself. Every row is an alarm (kind `rules_repushed`).

ALTER TABLE rules_published ADD COLUMN blob bytea;
ALTER TABLE rules_published ADD COLUMN repair boolean NOT NULL DEFAULT false;

CREATE TABLE rules_repairs (
    gateway       text        NOT NULL,
    for_version   bigint      NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    reason        text        NOT NULL CHECK (reason IN ('delta_refused', 'behind_after_reconnect')),
    rules_version bigint,
    version       bigint,
    detail        text        NOT NULL,
    PRIMARY KEY (gateway, for_version)
);

-- The alarms view, as in schema 5 (same event types), with the repairs.
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
      FROM journal_changes
    UNION ALL
    SELECT gateway, at, 'rules_repushed', NULL, reason,
           jsonb_build_object('rules_version', rules_version, 'version', version,
                              'for_version', for_version, 'detail', detail)
      FROM rules_repairs;

