-- sluice store, schema version 9 (PostgreSQL): tokens for plan runners.
-- Keep in step with ../sqlite/0009_runner_tokens.sql.
--
-- A token of scope `runner` (`sluice token create --scope runner`) is accepted only by
-- `/api/v1/runner` of `sluice serve`: it claims runner jobs (plans) and uploads their results.
ALTER TABLE api_tokens DROP CONSTRAINT IF EXISTS api_tokens_scope_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_scope_check
    CHECK (scope IN ('read', 'admin', 'state', 'runner'));
