-- sluice store, schema version 3 (PostgreSQL): state-domain locks and what stage 7 must remember
-- (which plans were used, which stacks are degraded, the approvals given). Keep in step with
-- ../sqlite/0003_locks_approvals.sql.

-- One row per stack that was ever locked: the model's lock (holder, lease, fencing token, FIFO
-- queue) as JSON in `state`, written back whole by each transition in the transaction that read
-- it. `last_token` and `holder_*` repeat what `state` says so that holders are listable by SQL;
-- last_token never decreases (the fencing token of the next holder is always larger).
CREATE TABLE locks (
    unit          TEXT PRIMARY KEY,
    last_token    BIGINT NOT NULL CHECK (last_token >= 0),
    holder_change TEXT,
    holder_token  BIGINT CHECK (holder_token IS NULL OR holder_token >= 1),
    state         TEXT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CHECK ((holder_change IS NULL) = (holder_token IS NULL))
);

-- A plan file applies at most once: the row is claimed (create-only, by the plan's digest)
-- before the engine runs, and its outcome is filled in when the apply ends.
CREATE TABLE plan_uses (
    plan_digest TEXT PRIMARY KEY,
    change_id   TEXT NOT NULL,
    unit        TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('applying', 'applied', 'failed', 'stale')),
    token       BIGINT NOT NULL CHECK (token >= 1),
    claimed_at  BIGINT NOT NULL,
    ended_at    BIGINT
);

-- A stack's health after a failed or interrupted apply (no row: healthy). `state` is the
-- model's StackHealth as JSON.
CREATE TABLE stack_health (
    unit       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Approvals given (the signed `approve` statements are in the evidence log; this indexes
-- them by change so the apply gate finds them without scanning the log).
CREATE TABLE approvals (
    id              BIGSERIAL PRIMARY KEY,
    change_id       TEXT NOT NULL,
    approver        TEXT NOT NULL,
    body            TEXT NOT NULL,
    envelope_digest BYTEA NOT NULL CHECK (octet_length(envelope_digest) = 32),
    created_at      BIGINT NOT NULL,
    UNIQUE (envelope_digest)
);
CREATE INDEX approvals_by_change ON approvals (change_id, id);
