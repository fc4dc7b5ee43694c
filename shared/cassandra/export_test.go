package cassandra

// Limits of the tables, for the tests on a real node (real_test.go).
const (
	ChunksPerBucket   = chunksPerBucket
	ActiveShards      = activeShards
	MaxBucketsPerPage = maxBucketsPerPage
)
