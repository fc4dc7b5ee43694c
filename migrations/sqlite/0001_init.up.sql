-- Jobs of the embedded single-machine store. Scalar fields are columns (for filtering);
-- parameters, labels, steps and observed are JSON text. Times are Unix milliseconds (UTC),
-- the precision both stores keep.
CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY,
    service          TEXT    NOT NULL,
    task             TEXT    NOT NULL,
    domain           TEXT    NOT NULL,
    arch             TEXT    NOT NULL,
    cluster          TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    -- active is 1 while status is not terminal; kept by the store so the partial index below
    -- does not have to know the list of terminal statuses.
    active           INTEGER NOT NULL,
    reason           TEXT    NOT NULL,
    message          TEXT    NOT NULL,
    callback         TEXT    NOT NULL,
    cancel_requested INTEGER NOT NULL,
    parameters       TEXT    NOT NULL,
    labels           TEXT    NOT NULL,
    steps            TEXT    NOT NULL,
    observed         TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    revision         INTEGER NOT NULL
) STRICT;

-- ListJobs: a service's jobs newest first, optionally of one task; the other filters
-- (domain, status) are applied while walking these indexes.
CREATE INDEX jobs_by_service ON jobs (service, created_at DESC, id DESC);
CREATE INDEX jobs_by_task ON jobs (service, task, created_at DESC, id DESC);

-- ListActive: non-terminal jobs oldest first; small because finished jobs leave it.
CREATE INDEX jobs_active ON jobs (created_at, id) WHERE active = 1;

-- Idempotency-Key header of POST /v1/jobs: first claim wins until expires_at (Unix ms).
CREATE TABLE idempotency_keys (
    service    TEXT    NOT NULL,
    idem_key   TEXT    NOT NULL,
    job_id     TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (service, idem_key)
) STRICT, WITHOUT ROWID;

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
