-- sluice store, schema version 4 (SQLite): the durable job queue, webhook deliveries and API
-- tokens. Keep in step with ../postgres/0004_jobs_tokens.sql.
-- (Version 3 is the lock table's; versions are numbered by feature, not by arrival.)

-- One row per job. `serial_key` serialises jobs of one change (a pull request: `owner/repo#N`):
-- only the oldest unfinished job of a key may run. `lease_token` grows on every claim, so a
-- worker whose lease expired and was taken over can no longer heartbeat or complete the job.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    serial_key   TEXT NOT NULL,
    head_sha     TEXT,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       INTEGER NOT NULL,
    lease_owner  TEXT,
    lease_until  INTEGER,
    lease_token  INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    reason       TEXT,
    delivery_id  TEXT,
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
-- Claims scan unfinished jobs in id order; serialisation looks up a key's unfinished jobs.
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_by_key ON jobs (serial_key, id) WHERE state IN ('queued', 'running');

-- Every webhook delivery accepted, by GitHub's X-GitHub-Delivery id: a redelivery finds its row
-- and changes nothing.
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY NOT NULL,
    event       TEXT NOT NULL,
    action      TEXT,
    jobs        INTEGER NOT NULL CHECK (jobs >= 0),
    received_at INTEGER NOT NULL
);

-- Bearer tokens for the API (and, later, the state backend). Only the SHA-256 of the secret is
-- kept; `id` is the public part printed before the secret.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
