-- The build queue (docs/queue.md). A job's queue record (class, slots, concurrency key,
-- position and reason while it waits, dispatch time and claim) is JSON text, '' for jobs
-- recorded before the queue existed.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT '';

-- Slot claims: one row per held slot of a scope ("instance/<name>", "quota/<service>/<arch>",
-- "key/<concurrency key>"), numbered 0..limit-1. A slot is claimed by inserting its row (the
-- primary key lets one holder in) and freed by deleting it where holder matches, so a scope
-- never has more holders than numbers below its limit.
CREATE TABLE slots (
    scope      TEXT    NOT NULL,
    idx        INTEGER NOT NULL,
    holder     TEXT    NOT NULL,
    claimed_at INTEGER NOT NULL,
    PRIMARY KEY (scope, idx)
) STRICT, WITHOUT ROWID;
