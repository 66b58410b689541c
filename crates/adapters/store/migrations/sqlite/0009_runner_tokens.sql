-- sluice store, schema version 9 (SQLite): tokens for plan runners.
-- Keep in step with ../postgres/0009_runner_tokens.sql.
--
-- A token of scope `runner` (`sluice token create --scope runner`) is accepted only by
-- `/api/v1/runner` of `sluice serve`: it claims runner jobs (plans) and uploads their results.
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (as in 0006).
CREATE TABLE api_tokens_v9 (
    id          TEXT PRIMARY KEY NOT NULL,
    secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'admin', 'state', 'runner')),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    state_read  TEXT NOT NULL DEFAULT '[]',
    state_write TEXT NOT NULL DEFAULT '[]',
    CHECK (scope = 'state' OR (state_read = '[]' AND state_write = '[]'))
);
INSERT INTO api_tokens_v9 (id, secret_hash, scope, name, created_at, revoked_at, state_read,
        state_write)
    SELECT id, secret_hash, scope, name, created_at, revoked_at, state_read, state_write
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_v9 RENAME TO api_tokens;
