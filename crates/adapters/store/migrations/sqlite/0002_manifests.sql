-- sluice store, schema version 2 (SQLite): the evidence manifest chain, guarded by the database.
-- Keep in step with ../postgres/0002_manifests.sql.
-- One row per manifest version of a change. The primary key (change_id, version) makes a second
-- version N of one change impossible, whichever process or replica writes it; a writer checks the
-- head version inside its write transaction and retries from the new head when it lost the race.

CREATE TABLE manifests (
    change_id  TEXT NOT NULL REFERENCES changes (change_id),
    version    INTEGER NOT NULL CHECK (version >= 1),
    envelope   BLOB NOT NULL CHECK (length(envelope) = 32),
    previous   BLOB CHECK (previous IS NULL OR length(previous) = 32),
    leaf_index INTEGER NOT NULL CHECK (leaf_index >= 0),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (change_id, version),
    CHECK ((version = 1) = (previous IS NULL))
) WITHOUT ROWID;

-- Stores of schema version 1 kept the chain in manifest events only: carry it over.
INSERT INTO manifests (change_id, version, envelope, previous, leaf_index, created_at)
SELECT change_id,
       json_extract(payload, '$.version'),
       unhex(substr(json_extract(payload, '$.envelope'), 8)),
       unhex(substr(json_extract(payload, '$.previous'), 8)),
       json_extract(payload, '$.leaf_index'),
       created_at
FROM events
WHERE kind = 'evidence.manifest';
