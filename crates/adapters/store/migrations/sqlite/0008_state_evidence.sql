-- sluice store, schema version 8 (SQLite): state audit events in the signed evidence log.
-- Keep in step with ../postgres/0008_state_evidence.sql.

-- Each state event is also an in-toto statement (predicate type
-- https://sluice.dev/predicates/state-event/v1) in a DSSE envelope signed with the evidence
-- key, appended to the transparency log in the event's own transaction. `envelope` is that
-- envelope's canonical JSON and `leaf_index` the leaf holding its SHA-256; the audit holds one
-- against the other. Rows written before this version have neither.
ALTER TABLE state_events ADD COLUMN leaf_index INTEGER CHECK (leaf_index IS NULL OR leaf_index >= 0);
ALTER TABLE state_events ADD COLUMN envelope TEXT;
