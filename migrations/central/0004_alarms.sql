-- The alarms view names the event types the gateways now raise: the
-- clock's (clock_untrusted replaces clock_went_back / clock_implausible,
-- which older journals still hold), refused signed times and time beacons
-- (a forged time is an attack on the doors), failed admin logins (summed
-- per address and minute), and the journal's own alarms.
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
