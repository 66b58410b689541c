-- sluice store, schema version 1 (SQLite).
-- Keep in step with ../postgres/0001_initial.sql: same tables, same columns, same checks.
-- Times are Unix milliseconds (UTC). Digests and hashes are raw 32-byte SHA-256 values.

CREATE TABLE changes (
    change_id  TEXT PRIMARY KEY NOT NULL,
    repo       TEXT NOT NULL,
    pr         INTEGER CHECK (pr IS NULL OR pr >= 0),
    base_sha   TEXT,
    head_sha   TEXT NOT NULL,
    env        TEXT NOT NULL,
    unit_kind  TEXT NOT NULL CHECK (unit_kind IN ('stack', 'app')),
    unit       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE stage_results (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id       TEXT NOT NULL REFERENCES changes (change_id),
    stage           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    envelope_digest BLOB CHECK (envelope_digest IS NULL OR length(envelope_digest) = 32),
    recorded_at     INTEGER NOT NULL
);
CREATE INDEX stage_results_by_change ON stage_results (change_id, id);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    change_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_change ON events (change_id, id);

-- The transparency log. log_head holds the size under which every leaf and node is final; an
-- append moves it forward in the same transaction that writes the leaves and nodes.
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (id, size) VALUES (1, 0);

CREATE TABLE log_leaves (
    idx             INTEGER PRIMARY KEY CHECK (idx >= 0),
    entry           BLOB NOT NULL CHECK (length(entry) = 32),
    leaf_hash       BLOB NOT NULL CHECK (length(leaf_hash) = 32),
    envelope_digest BLOB CHECK (envelope_digest IS NULL OR length(envelope_digest) = 32),
    created_at      INTEGER NOT NULL
);
-- No index on entry: entries are random hashes, and an index on them would turn every append
-- into scattered page writes (7x fewer appends per second on SQLite). Appends stay sequential;
-- a lookup by entry is a scan (see Store::find_leaf).

-- Perfect subtrees of level >= 1: node (level, idx) covers leaves [idx << level, (idx + 1) << level).
-- Keyed by the last leaf it covers so that one index serves both proof look-ups and the audit's
-- scan in the order an append produces nodes.
CREATE TABLE log_nodes (
    end_leaf INTEGER NOT NULL,
    level    INTEGER NOT NULL CHECK (level BETWEEN 1 AND 62),
    idx      INTEGER NOT NULL CHECK (idx >= 0),
    hash     BLOB NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (end_leaf, level),
    CHECK (end_leaf = ((idx + 1) << level) - 1)
) WITHOUT ROWID;

CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY CHECK (size >= 0),
    root       BLOB NOT NULL CHECK (length(root) = 32),
    origin     TEXT NOT NULL,
    note       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE artifacts (
    digest     BLOB PRIMARY KEY NOT NULL CHECK (length(digest) = 32),
    size       INTEGER NOT NULL CHECK (size >= 0),
    media_type TEXT NOT NULL,
    secret     INTEGER NOT NULL CHECK (secret IN (0, 1)),
    created_at INTEGER NOT NULL
);
