-- sluice store, schema version 14 (SQLite): state blobs in a table with rowids.
--
-- Why: in a WITHOUT ROWID table a row is its own b-tree key, and SQLite compares a searched
-- key against a stored key whose record spills onto overflow pages by reading that whole
-- record first. A sealed state is about 100 KB, so every insert into or lookup in
-- `state_blobs` read the full bodies of the five to seven rows its search passed: 156 page
-- reads for one `POST` of a 1 MB state (counted with strace), and as many for a `GET` whose
-- pages were not cached. In a rowid table the digest's index holds only the digest and the
-- rowid, and a body is read only when it is selected.
--
-- PostgreSQL has no counterpart: its tables are heaps, whose primary key index never holds
-- the body.
--
-- The rows are copied aside, the table is dropped and made again, and the rows go back.
-- `state_versions` references `state_blobs (digest)`: with the foreign keys deferred, the drop
-- counts every version as dangling and putting its blob back counts it as resolved again, so
-- the migration commits only if every version finds its blob again (SQLite refuses the commit
-- otherwise, and nothing changes).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE state_blobs_moving AS SELECT digest, sealed, size, created_at FROM state_blobs;

DROP TABLE state_blobs;

-- Create-only: a digest is written once and never updated (as in schema version 5).
CREATE TABLE state_blobs (
    digest     BLOB NOT NULL UNIQUE CHECK (length(digest) = 32),
    sealed     BLOB NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    created_at INTEGER NOT NULL
);

INSERT INTO state_blobs (digest, sealed, size, created_at)
    SELECT digest, sealed, size, created_at FROM state_blobs_moving ORDER BY created_at, digest;

DROP TABLE state_blobs_moving;
