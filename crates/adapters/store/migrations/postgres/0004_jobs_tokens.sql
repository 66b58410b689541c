-- sluice store, schema version 4 (PostgreSQL): the durable job queue, webhook deliveries and API
-- tokens. Keep in step with ../sqlite/0004_jobs_tokens.sql.
-- (Version 3 is the lock table's; versions are numbered by feature, not by arrival.)

-- One row per job. `serial_key` serialises jobs of one change (a pull request: `owner/repo#N`):
-- only the oldest unfinished job of a key may run. `lease_token` grows on every claim, so a
-- worker whose lease expired and was taken over can no longer heartbeat or complete the job.
-- Replicas claim with FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         TEXT NOT NULL,
    serial_key   TEXT NOT NULL,
    head_sha     TEXT,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL
                 CHECK (state IN ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    run_at       BIGINT NOT NULL,
    lease_owner  TEXT,
    lease_until  BIGINT,
    lease_token  BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT,
    reason       TEXT,
    delivery_id  TEXT,
    created_at   BIGINT NOT NULL,
    started_at   BIGINT,
    finished_at  BIGINT
);
CREATE INDEX jobs_unfinished ON jobs (id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_by_key ON jobs (serial_key, id) WHERE state IN ('queued', 'running');

CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT,
    jobs        INTEGER NOT NULL CHECK (jobs >= 0),
    received_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL CHECK (octet_length(secret_hash) = 32),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'admin')),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
