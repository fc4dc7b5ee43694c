DROP INDEX IF EXISTS jobs_finished_updated;
DROP TABLE IF EXISTS log_steps;
DROP TABLE IF EXISTS log_chunks;
