-- sluice store, schema version 6 (SQLite): tokens for the state backend.
-- Keep in step with ../postgres/0006_token_state_grants.sql.
--
-- A token of scope `state` is accepted by the Terraform `http` backend of `sluice serve` and
-- only there (not by the read API); it may read the stacks matching `state_read` and read and
-- write those matching `state_write` (JSON arrays of globs over stack ids). Other scopes keep
-- empty lists. SQLite cannot alter a CHECK constraint, so the table is rebuilt.
CREATE TABLE api_tokens_v6 (
    id          TEXT PRIMARY KEY NOT NULL,
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'admin', 'state')),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    state_read  TEXT NOT NULL DEFAULT '[]',
    state_write TEXT NOT NULL DEFAULT '[]',
    CHECK (scope = 'state' OR (state_read = '[]' AND state_write = '[]'))
);
INSERT INTO api_tokens_v6 (id, secret_hash, scope, name, created_at, revoked_at)
    SELECT id, secret_hash, scope, name, created_at, revoked_at FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v6 RENAME TO api_tokens;
