package store

// The rules of the logs contract that do not depend on the database, shared by shared/sqlite and
// shared/cassandra; the logs part of the contract suite holds both to them.

import "github.com/omnibuildplatform/omni-orchestrator/shared/jobs"

// Limits of the log store.
const (
	// MaxChunkData bounds one chunk's data: a chunk of shared/logs holds at most 256 KiB, or one
	// line of up to 1 MiB; a pushed chunk is bounded by the event size. Cassandra refuses
	// mutations above half its commit log segment (16 MiB by default).
	MaxChunkData = 4 << 20
	// DefaultChunkLimit and MaxChunkLimit bound a LogChunks call.
	DefaultChunkLimit = 100
	MaxChunkLimit     = 1000
)

// CheckLogKey checks the key of a chunk or step.
func CheckLogKey(jobID, step, source string) error {
	for _, k := range []struct{ field, v string }{{"jobId", jobID}, {"step", step}} {
		if err := CheckKey(k.field, k.v); err != nil {
			return err
		}
	}
	if source != LogSourceArchive && source != LogSourcePush {
		return jobs.Invalid("source", "unknown log source %q (want %s or %s)", source, LogSourceArchive, LogSourcePush)
	}
	return nil
}

// CheckChunk checks a chunk before it is stored.
func CheckChunk(c *LogChunk) error {
	if err := CheckLogKey(c.JobID, c.Step, c.Source); err != nil {
		return err
	}
	switch {
	case c.Seq < 1:
		return jobs.Invalid("seq", "%d: sequence numbers start at 1", c.Seq)
	case c.Lines < 1 || len(c.Data) == 0:
		return jobs.Invalid("lines", "a chunk holds at least one line")
	case len(c.Data) > MaxChunkData:
		return jobs.Invalid("data", "%d bytes: more than %d", len(c.Data), MaxChunkData)
	}
	return nil
}

// CheckLogStep checks a step state before it is stored.
func CheckLogStep(s *LogStep) error {
	if err := CheckKey("jobId", s.JobID); err != nil {
		return err
	}
	if err := CheckKey("step", s.Step); err != nil {
		return err
	}
	if s.LastSeq < 0 || s.Bytes < 0 || s.Lines < 0 {
		return jobs.Invalid("lastSeq", "negative counts")
	}
	return nil
}

// ChunkLimit returns limit bounded to 1..MaxChunkLimit (0: DefaultChunkLimit).
func ChunkLimit(limit int) int {
	switch {
	case limit <= 0:
		return DefaultChunkLimit
	case limit > MaxChunkLimit:
		return MaxChunkLimit
	}
	return limit
}
