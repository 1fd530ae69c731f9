-- Portier central, schema 10: reader upkeep. A reader's firmware update
-- or key rotation that failed (`reader_update_failed`,
-- `reader_key_rotation_failed`, sent by gateways that run reader upkeep
-- from central) is an alarm: the alarms view and the alarm feed's trigger
-- list them beside the others (a test holds both to event::ALARM_TYPES).

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
                    'fire_alarm_input_offline', 'reader_update_failed',
                    'reader_key_rotation_failed')
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

DROP TRIGGER events_alarm_notify ON events;
CREATE TRIGGER events_alarm_notify AFTER INSERT ON events FOR EACH ROW
    WHEN (NEW.type IN ('door_forced', 'door_held_open', 'pd_offline', 'security_alarm',
                        'clock_went_back', 'clock_implausible', 'clock_untrusted',
                        'signed_time_refused', 'time_beacon_refused', 'door_mode_withheld',
                        'disk_full', 'rules_refused', 'rules_untrusted', 'journal_full',
                        'journal_record_skipped', 'event_oversized', 'uplink_message_refused',
                        'ack_out_of_range', 'admin_login_failed', 'admin_unavailable',
                        'duress', 'command_refused', 'fire_alarm',
                        'fire_alarm_input_offline', 'reader_update_failed',
                        'reader_key_rotation_failed')
          OR (NEW.type = 'pd_status'
              AND ((NEW.event->>'tamper')::boolean OR (NEW.event->>'power_failure')::boolean)))
    EXECUTE FUNCTION portier_alarm_notify();
