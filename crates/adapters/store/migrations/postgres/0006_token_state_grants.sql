-- sluice store, schema version 6 (PostgreSQL): tokens for the state backend.
-- Keep in step with ../sqlite/0006_token_state_grants.sql.
--
-- A token of scope `state` is accepted by the Terraform `http` backend of `sluice serve` and
-- only there (not by the read API); it may read the stacks matching `state_read` and read and
-- write those matching `state_write` (JSON arrays of globs over stack ids). Other scopes keep
-- empty lists.
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_scope_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check
    CHECK (scope IN ('read', 'admin', 'state'));
ALTER TABLE api_tokens ADD COLUMN state_read TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD COLUMN state_write TEXT NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_state_grants_check
    CHECK (scope = 'state' OR (state_read = '[]' AND state_write = '[]'));
