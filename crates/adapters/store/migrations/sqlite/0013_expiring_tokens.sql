-- sluice store, schema version 13 (SQLite): tokens that stop working at a time unless renewed.
-- Keep in step with ../postgres/0013_expiring_tokens.sql.
--
-- `sluice serve --runner` makes a runner token for its in-process runner at every start. It is
-- revoked at a graceful shutdown; one left by a crash stops working at `expires_at`, which the
-- running server keeps moving forward. NULL: the token does not expire (tokens made by
-- `sluice token create`).
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;
