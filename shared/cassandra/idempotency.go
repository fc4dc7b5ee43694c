package cassandra

import (
	"context"
	"errors"
	"fmt"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
	"math"
	"time"

	"github.com/gocql/gocql"
)

// ClaimIdempotencyKey implements store.Store with INSERT ... IF NOT EXISTS USING TTL: the row
// expires by itself. Cassandra's TTL is in whole seconds, so ttl is rounded up to one.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, service, key, jobID string, ttl time.Duration) (string, error) {
	if err := store.CheckClaim(service, key, jobID, ttl); err != nil {
		return "", err
	}
	seconds := int(min(math.Ceil(ttl.Seconds()), math.MaxInt32))
	existing := map[string]any{}
	applied, err := s.s.Query(`INSERT INTO idempotency_keys (service, idem_key, job_id) VALUES (?, ?, ?)
		IF NOT EXISTS USING TTL ?`, service, key, jobID, seconds).WithContext(ctx).
		SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(existing)
	switch {
	case err != nil:
		// The outcome is unknown: a serial read returns whichever claim was accepted.
		var winner string
		rerr := s.s.Query(`SELECT job_id FROM idempotency_keys WHERE service = ? AND idem_key = ?`, service, key).
			WithContext(ctx).Consistency(s.serial()).Idempotent(true).Scan(&winner)
		if rerr == nil {
			return winner, nil
		}
		if !errors.Is(rerr, gocql.ErrNotFound) {
			err = errors.Join(err, rerr)
		}
		return "", wrap("claim idempotency key", err)
	case applied:
		return jobID, nil
	}
	winner, ok := existing["job_id"].(string)
	if !ok {
		return "", fmt.Errorf("claim idempotency key: unexpected answer %v", existing)
	}
	return winner, nil
}
