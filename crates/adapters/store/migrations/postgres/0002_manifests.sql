-- sluice store, schema version 2 (PostgreSQL): the evidence manifest chain, guarded by the
-- database. Keep in step with ../sqlite/0002_manifests.sql.
-- One row per manifest version of a change. The primary key (change_id, version) makes a second
-- version N of one change impossible, whichever replica writes it; a writer checks the head
-- version inside its write transaction (which holds the log head's row lock) and retries from the
-- new head when it lost the race.

CREATE TABLE manifests (
    change_id  TEXT NOT NULL REFERENCES changes (change_id),
    version    BIGINT NOT NULL CHECK (version >= 1),
    envelope   BYTEA NOT NULL CHECK (octet_length(envelope) = 32),
    previous   BYTEA CHECK (previous IS NULL OR octet_length(previous) = 32),
    leaf_index BIGINT NOT NULL CHECK (leaf_index >= 0),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (change_id, version),
    CHECK ((version = 1) = (previous IS NULL))
);

-- Stores of schema version 1 kept the chain in manifest events only: carry it over.
INSERT INTO manifests (change_id, version, envelope, previous, leaf_index, created_at)
SELECT change_id,
       (payload::json ->> 'version')::bigint,
       decode(substr(payload::json ->> 'envelope', 8), 'hex'),
       decode(substr(payload::json ->> 'previous', 8), 'hex'),
       (payload::json ->> 'leaf_index')::bigint,
       created_at
FROM events
WHERE kind = 'evidence.manifest';
