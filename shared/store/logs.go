package store

import (
	"context"
	"time"
)

// LogStore keeps the logs of jobs' steps as chunks: many lines per row, a monotonic sequence per
// (job, step, source). Implemented by shared/sqlite and shared/cassandra next to Store, and held to
// the logs part of the contract suite.
type LogStore interface {
	// PutLogChunk stores c. Idempotent: a chunk with the same (JobID, Step, Source, Seq) that is
	// already stored is left as it is (the first write wins) and nil is returned, so a redelivered
	// or restarted archive that re-chunks the same stream the same way stores each line once.
	PutLogChunk(ctx context.Context, c LogChunk) error
	// LogChunks returns up to limit chunks of (jobID, step, source) with Seq > after, in Seq order.
	LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]LogChunk, error)
	// PutLogStep records the archive state of one step; a state never goes back: Complete and
	// Incomplete stay set once set, LastSeq and Bytes only grow.
	PutLogStep(ctx context.Context, s LogStep) error
	// LogSteps returns the archive state of every step of jobID that has one.
	LogSteps(ctx context.Context, jobID string) ([]LogStep, error)
}

// Log sources: lines pulled from the cluster by log-archive, and lines pushed by workers.
const (
	LogSourceArchive = "archive"
	LogSourcePush    = "push"
)

// LogChunk is a run of consecutive log lines of one step.
type LogChunk struct {
	JobID  string
	Step   string
	Source string
	// Seq orders the chunks of (JobID, Step, Source), from 1, without gaps.
	Seq int64
	// Data is the lines, each ending in "\n", as the container wrote them (no timestamps).
	Data []byte
	// Lines is the number of lines in Data.
	Lines int
	// FirstTime and LastTime are the cluster timestamps of the first and last line.
	FirstTime, LastTime time.Time
}

// LogStep is the archive state of one step's log.
type LogStep struct {
	JobID string
	Step  string
	// LastSeq is the highest archived chunk sequence.
	LastSeq int64
	// Bytes and Lines count what is archived.
	Bytes int64
	Lines int64
	// Complete: the whole log of the step is archived.
	Complete bool
	// Incomplete: the pod disappeared before its log was archived; what is stored is all there is.
	Incomplete bool
	// Reason explains Incomplete.
	Reason string
}
