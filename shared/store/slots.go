package store

import (
	"context"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// SlotStore keeps the slot claims of the build queue (docs/queue.md): numbered slots of a scope
// (an engine instance, a service's quota on an arch, a concurrency key), each held by at most
// one holder. Both writes are conditional (a transaction on SQLite, a lightweight transaction
// on Cassandra), so two dispatchers never hold the same slot, and a scope's holders never
// outnumber the slots below its limit however many dispatchers race.
type SlotStore interface {
	// ClaimSlot makes holder the holder of slot index of scope if the slot is free. It reports
	// whether holder holds the slot after the call (true also when it held it already).
	ClaimSlot(ctx context.Context, scope string, index int, holder string) (bool, error)
	// ReleaseSlot frees slot index of scope if holder holds it; freeing a slot that is free or
	// held by another holder does nothing. It reports whether it freed the slot.
	ReleaseSlot(ctx context.Context, scope string, index int, holder string) (bool, error)
	// ListSlots returns every held slot, ordered by scope then index.
	ListSlots(ctx context.Context) ([]Slot, error)
}

// Slot is one held slot.
type Slot struct {
	Scope  string
	Index  int
	Holder string
	// ClaimedAt is when the holder claimed it (milliseconds, UTC).
	ClaimedAt time.Time
}

// CheckSlot validates the arguments of ClaimSlot and ReleaseSlot.
func CheckSlot(scope string, index int, holder string) error {
	if err := CheckKey("scope", scope); err != nil {
		return err
	}
	if err := CheckKey("holder", holder); err != nil {
		return err
	}
	if index < 0 {
		return jobs.Invalid("index", "must not be negative")
	}
	return nil
}
