-- Portier central, schema 7: the reader inventory. Every gateway's status
-- message lists its readers (identity from osdp_PDID, capabilities from
-- osdp_PDCAP, link state); central keeps one row per (gateway, bus,
-- address), updated from each status, so "which readers still run
-- firmware 1.2" is one query (`portier central readers --firmware 1.2`).
-- A reader that disappears from a gateway's list is kept (last_reported
-- says when it was last listed) so a removed or renumbered reader can be
-- told from one that went quiet.

CREATE TABLE readers (
    gateway        text        NOT NULL,
    bus            text        NOT NULL,
    address        smallint    NOT NULL CHECK (address BETWEEN 0 AND 127),
    name           text        NOT NULL DEFAULT '',
    vendor         text,
    model          smallint,
    version        smallint,
    serial         bigint,
    firmware       text,
    capabilities   jsonb       NOT NULL DEFAULT '[]',
    online         boolean     NOT NULL DEFAULT false,
    secure_channel boolean     NOT NULL DEFAULT false,
    updating       boolean     NOT NULL DEFAULT false,
    last_seen      timestamptz,
    last_reported  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway, bus, address)
);

CREATE INDEX readers_firmware ON readers (firmware);
