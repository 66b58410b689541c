-- sluice store, schema version 11 (SQLite): what the job queue and the state backend look up on
-- every request, indexed or stored instead of recomputed. Keep in step with
-- ../postgres/0011_queue_state_speed.sql.

-- Every claim first gives up running jobs whose lease expired on their last attempt and may take
-- over running jobs whose lease expired: without this index both scanned the whole table (all
-- finished jobs included), so a claim grew slower with the queue's history.
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';

-- The MD5 of a version's plaintext (what `GET` answers in Content-MD5), computed once when it is
-- written instead of over the whole body on every read. Versions written before this have none
-- and are hashed when read.
ALTER TABLE state_versions ADD COLUMN md5 BLOB CHECK (md5 IS NULL OR length(md5) = 16);
