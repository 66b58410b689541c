-- sluice store, schema version 6 (PostgreSQL): break-glass grants and the backport items they
-- leave (docs/break-glass.md). Keep in step with ../sqlite/0006_break_glass.sql.

-- One row per grant. `body` is the model's BreakGlassGrant as JSON, written back whole by each
-- transition (a use, a close, an expiry) on the condition that it is still what the writer
-- read, so two appliers using one grant at once cannot lose a use. The other columns repeat
-- what `body` says so that grants are listable by SQL.
CREATE TABLE break_glass_grants (
    id         TEXT PRIMARY KEY NOT NULL,
    unit       TEXT NOT NULL,
    opened_by  TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('open', 'closed', 'expired')),
    opened_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL CHECK (expires_at > opened_at),
    uses       BIGINT NOT NULL CHECK (uses >= 0),
    body       TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX break_glass_grants_by_unit ON break_glass_grants (unit, opened_at);

-- Work owed after a used grant ended: one per grant, created in the transaction that ends the
-- grant, open until a merged change touching the unit resolves it. `body` is the model's
-- BackportItem as JSON.
CREATE TABLE backport_items (
    grant_id    TEXT PRIMARY KEY NOT NULL REFERENCES break_glass_grants (id),
    unit        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX backport_items_by_status ON backport_items (status, unit);
