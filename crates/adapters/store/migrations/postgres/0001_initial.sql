-- sluice store, schema version 1 (PostgreSQL).
-- Keep in step with ../sqlite/0001_initial.sql: same tables, same columns, same checks.
-- Times are Unix milliseconds (UTC). Digests and hashes are raw 32-byte SHA-256 values.

CREATE TABLE changes (
    change_id  TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    pr         BIGINT CHECK (pr IS NULL OR pr >= 0),
    base_sha   TEXT,
    head_sha   TEXT NOT NULL,
    env        TEXT NOT NULL,
    unit_kind  TEXT NOT NULL CHECK (unit_kind IN ('stack', 'app')),
    unit       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE stage_results (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id       TEXT NOT NULL REFERENCES changes (change_id),
    stage           TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    envelope_digest BYTEA CHECK (envelope_digest IS NULL OR octet_length(envelope_digest) = 32),
    recorded_at     BIGINT NOT NULL
);
CREATE INDEX stage_results_by_change ON stage_results (change_id, id);

CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_by_change ON events (change_id, id);

-- The transparency log. log_head holds the size under which every leaf and node is final; an
-- append locks it (SELECT ... FOR UPDATE), so replicas appending at once are serialised.
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL CHECK (size >= 0)
);
INSERT INTO log_head (id, size) VALUES (1, 0);

CREATE TABLE log_leaves (
    idx             BIGINT PRIMARY KEY CHECK (idx >= 0),
    entry           BYTEA NOT NULL CHECK (octet_length(entry) = 32),
    leaf_hash       BYTEA NOT NULL CHECK (octet_length(leaf_hash) = 32),
    envelope_digest BYTEA CHECK (envelope_digest IS NULL OR octet_length(envelope_digest) = 32),
    created_at      BIGINT NOT NULL
);
-- No index on entry: entries are random hashes, and an index on them would turn every append
-- into scattered page writes (7x fewer appends per second on SQLite). Appends stay sequential;
-- a lookup by entry is a scan (see Store::find_leaf).

-- Perfect subtrees of level >= 1: node (level, idx) covers leaves [idx << level, (idx + 1) << level).
-- Keyed by the last leaf it covers so that one index serves both proof look-ups and the audit's
-- scan in the order an append produces nodes.
CREATE TABLE log_nodes (
    end_leaf BIGINT NOT NULL,
    level    INTEGER NOT NULL CHECK (level BETWEEN 1 AND 62),
    idx      BIGINT NOT NULL CHECK (idx >= 0),
    hash     BYTEA NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (end_leaf, level),
    CHECK (end_leaf = ((idx + 1) << level) - 1)
);

CREATE TABLE checkpoints (
    size       BIGINT PRIMARY KEY CHECK (size >= 0),
    root       BYTEA NOT NULL CHECK (octet_length(root) = 32),
    origin     TEXT NOT NULL,
    note       TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE artifacts (
    digest     BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    size       BIGINT NOT NULL CHECK (size >= 0),
    media_type TEXT NOT NULL,
    secret     BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
