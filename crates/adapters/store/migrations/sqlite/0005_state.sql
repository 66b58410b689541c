-- sluice store, schema version 5 (SQLite): remote state for the Terraform `http` backend.
-- Keep in step with ../postgres/0005_state.sql. (Versions 3 and 4 belong to the lock store and
-- the server's tokens; migrations apply by version, whichever lands first.)

-- State bodies, content-addressed by the SHA-256 of the plaintext and stored only encrypted
-- (AES-256-GCM, a data key per blob wrapped by a key-encryption key; see sluice-iac's seal).
-- Create-only: a digest is written once and never updated.
CREATE TABLE state_blobs (
    digest     BLOB PRIMARY KEY CHECK (length(digest) = 32),
    sealed     BLOB NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Every accepted write is a new, immutable version; (unit, version) is the chain the database
-- guards: a second version N of one unit is refused whichever replica writes it.
CREATE TABLE state_versions (
    unit          TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    digest        BLOB NOT NULL REFERENCES state_blobs (digest),
    serial        INTEGER NOT NULL CHECK (serial >= 0),
    lineage       TEXT NOT NULL,
    size          INTEGER NOT NULL CHECK (size >= 0),
    identity      TEXT NOT NULL,
    lock_id       TEXT,
    fencing_token INTEGER CHECK (fencing_token IS NULL OR fencing_token >= 1),
    forced_reason TEXT,
    rollback_of   INTEGER CHECK (rollback_of IS NULL OR rollback_of >= 1),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (unit, version)
) WITHOUT ROWID;

-- The audit trail of the backend: one row per read, write, lock, unlock and refusal. Details
-- never hold state content, only digests, serials and reasons.
CREATE TABLE state_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    unit       TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    identity   TEXT NOT NULL,
    version    INTEGER,
    detail     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX state_events_by_unit ON state_events (unit, id);

-- The Terraform lock attached to a unit's state-domain lock: the client's lock info (what a
-- 423 answer shows) and the fencing token of the state-domain lock it was granted under. The
-- state-domain lock decides; this row only names which Terraform lock id acts for its holder.
CREATE TABLE state_backend_locks (
    unit          TEXT PRIMARY KEY,
    lock_id       TEXT NOT NULL,
    change        TEXT NOT NULL,
    fencing_token INTEGER NOT NULL CHECK (fencing_token >= 1),
    info          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
