-- Logs of jobs' steps as chunks (many lines per row), numbered per (job, step, source) from 1.
-- A rowid table with a separate primary-key index, not WITHOUT ROWID: rows hold up to a few
-- hundred KiB, which SQLite keeps in overflow pages of the table, away from the key index.
-- Times of lines are Unix nanoseconds (0 = unknown); stored_at is Unix milliseconds, the age
-- Purge goes by (what a Cassandra TTL counts from).
CREATE TABLE log_chunks (
    job_id     TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL,
    lines      INTEGER NOT NULL,
    first_time INTEGER NOT NULL,
    last_time  INTEGER NOT NULL,
    stored_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, step, source, seq)
) STRICT;

CREATE INDEX log_chunks_stored ON log_chunks (stored_at);

-- The archive state of each step's log; fields only move forward (see store.LogStore).
CREATE TABLE log_steps (
    job_id     TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    last_seq   INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    lines      INTEGER NOT NULL,
    complete   INTEGER NOT NULL,
    incomplete INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    stored_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, step)
) STRICT, WITHOUT ROWID;

CREATE INDEX log_steps_stored ON log_steps (stored_at);

-- Purge of finished jobs by age of their last change.
CREATE INDEX jobs_finished_updated ON jobs (updated_at) WHERE active = 0;
