-- Portier central, schema 8: areas. Gateways journal every passage at a
-- door with areas as a `presence` event with `area` (entered, or left),
-- `door`, and for a departure into an outer area `outer`. Who is inside
-- is each card's latest such event per gateway: an entry puts it in
-- `area`, a departure in `outer` (or out of every area when absent).
-- `portier central muster` reads this view; a gateway's own view (offline
-- too) is on its admin page and `portier status --muster`.
--
-- Only the months `events` still holds count (`[retention] days`): a card
-- whose last passage was dropped by retention is no longer listed.

CREATE INDEX events_presence ON events (gateway, credential, at DESC, seq DESC)
    WHERE type = 'presence';

CREATE VIEW muster AS
    SELECT gateway, credential, name,
           CASE WHEN direction = 'in' THEN area ELSE outer_area END AS area,
           at AS since, door
      FROM (SELECT DISTINCT ON (gateway, credential)
                   gateway, credential, at,
                   event->>'name' AS name,
                   event->>'direction' AS direction,
                   event->>'area' AS area,
                   event->>'outer' AS outer_area,
                   event->>'door' AS door
              FROM events
             WHERE type = 'presence' AND credential IS NOT NULL
             ORDER BY gateway, credential, at DESC, seq DESC) latest
     WHERE area IS NOT NULL
       AND (direction = 'in' OR outer_area IS NOT NULL);
