package sqlite

import (
	"context"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var _ store.SlotStore = (*Store)(nil)

// ClaimSlot implements store.SlotStore: an insert that the primary key lets through only for a
// free slot, then a read of the holder, in one write transaction.
func (s *Store) ClaimSlot(ctx context.Context, scope string, index int, holder string) (_ bool, err error) {
	if err := store.CheckSlot(scope, index, holder); err != nil {
		return false, err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, wrap("claim slot", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `INSERT INTO slots (scope, idx, holder, claimed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (scope, idx) DO NOTHING`, scope, index, holder, time.Now().UnixMilli()); err != nil {
		return false, wrap("claim slot", err)
	}
	var got string
	if err := tx.QueryRowContext(ctx, `SELECT holder FROM slots WHERE scope = ? AND idx = ?`, scope, index).Scan(&got); err != nil {
		return false, wrap("claim slot", err)
	}
	if err := tx.Commit(); err != nil {
		return false, wrap("claim slot", err)
	}
	return got == holder, nil
}

// ReleaseSlot implements store.SlotStore: a delete conditional on the holder.
func (s *Store) ReleaseSlot(ctx context.Context, scope string, index int, holder string) (bool, error) {
	if err := store.CheckSlot(scope, index, holder); err != nil {
		return false, err
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM slots WHERE scope = ? AND idx = ? AND holder = ?`, scope, index, holder)
	if err != nil {
		return false, wrap("release slot", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, wrap("release slot", err)
	}
	return n > 0, nil
}

// ListSlots implements store.SlotStore.
func (s *Store) ListSlots(ctx context.Context) ([]store.Slot, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT scope, idx, holder, claimed_at FROM slots ORDER BY scope, idx`)
	if err != nil {
		return nil, wrap("list slots", err)
	}
	defer rows.Close()
	var out []store.Slot
	for rows.Next() {
		var sl store.Slot
		var at int64
		if err := rows.Scan(&sl.Scope, &sl.Index, &sl.Holder, &at); err != nil {
			return nil, wrap("list slots", err)
		}
		sl.ClaimedAt = fromMillis(at)
		out = append(out, sl)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("list slots", err)
	}
	return out, nil
}
