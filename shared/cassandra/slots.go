package cassandra

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var _ store.SlotStore = (*Store)(nil)

// ClaimSlot implements store.SlotStore with INSERT ... IF NOT EXISTS (a lightweight
// transaction): of racing claims of one slot exactly one is applied. A claim whose outcome is
// unknown (a timeout) is settled by a serial read of the slot.
func (s *Store) ClaimSlot(ctx context.Context, scope string, index int, holder string) (bool, error) {
	if err := store.CheckSlot(scope, index, holder); err != nil {
		return false, err
	}
	existing := map[string]any{}
	applied, err := s.s.Query(`INSERT INTO slots (scope, idx, holder, claimed_at) VALUES (?, ?, ?, ?) IF NOT EXISTS`,
		scope, index, holder, store.MS(time.Now())).WithContext(ctx).
		SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(existing)
	switch {
	case err != nil:
		got, rerr := s.slotHolder(ctx, scope, index)
		if rerr != nil {
			return false, wrap("claim slot", errors.Join(err, rerr))
		}
		return got == holder, nil
	case applied:
		return true, nil
	}
	got, ok := existing["holder"].(string)
	if !ok {
		return false, fmt.Errorf("claim slot: unexpected answer %v", existing)
	}
	return got == holder, nil
}

// ReleaseSlot implements store.SlotStore with DELETE ... IF holder = ? (a lightweight
// transaction), settled like ClaimSlot when its outcome is unknown.
func (s *Store) ReleaseSlot(ctx context.Context, scope string, index int, holder string) (bool, error) {
	if err := store.CheckSlot(scope, index, holder); err != nil {
		return false, err
	}
	applied, err := s.s.Query(`DELETE FROM slots WHERE scope = ? AND idx = ? IF holder = ?`, scope, index, holder).
		WithContext(ctx).SerialConsistency(s.cfg.serial).RetryPolicy(nil).MapScanCAS(map[string]any{})
	if err != nil {
		got, rerr := s.slotHolder(ctx, scope, index)
		if rerr != nil {
			return false, wrap("release slot", errors.Join(err, rerr))
		}
		return got != holder, nil
	}
	return applied, nil
}

// slotHolder reads the holder of a slot at serial consistency ("" when free).
func (s *Store) slotHolder(ctx context.Context, scope string, index int) (string, error) {
	var got string
	err := s.s.Query(`SELECT holder FROM slots WHERE scope = ? AND idx = ?`, scope, index).
		WithContext(ctx).Consistency(s.serial()).Idempotent(true).Scan(&got)
	if errors.Is(err, gocql.ErrNotFound) {
		return "", nil
	}
	return got, err
}

// ListSlots implements store.SlotStore. It reads the whole slots table, which holds only held
// slots: at most the total capacity of the engine instances plus the quotas and keys in use.
func (s *Store) ListSlots(ctx context.Context) ([]store.Slot, error) {
	// A range read cannot be serial; at the store's consistency (QUORUM) it sees every
	// applied claim and release.
	iter := s.s.Query(`SELECT scope, idx, holder, claimed_at FROM slots`).WithContext(ctx).
		Consistency(s.cfg.consistency).Idempotent(true).Iter()
	var out []store.Slot
	var sl store.Slot
	for iter.Scan(&sl.Scope, &sl.Index, &sl.Holder, &sl.ClaimedAt) {
		sl.ClaimedAt = sl.ClaimedAt.UTC()
		out = append(out, sl)
	}
	if err := iter.Close(); err != nil {
		return nil, wrap("list slots", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope != out[j].Scope {
			return out[i].Scope < out[j].Scope
		}
		return out[i].Index < out[j].Index
	})
	return out, nil
}
