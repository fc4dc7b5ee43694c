package store

import "time"

// RetentionEnv says how long jobs and logs are kept: the settings of `omni db migrate` (which
// turns them into Cassandra table TTLs) and of the local all-in-one's SQLite purge. The defaults
// are defined here only.
type RetentionEnv struct {
	// JobRetention: finished jobs are removed this long after their last change. Default 0: kept for ever.
	JobRetention time.Duration `envconfig:"OMNI_JOB_RETENTION" default:"0"`
	// LogRetention: log chunks and log states are removed this long after they were stored. Default 720h.
	LogRetention time.Duration `envconfig:"OMNI_LOG_RETENTION" default:"720h"`
}
