package submit

import (
	"context"
	"slices"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// goneStore is a store whose client goes away (its request context is cancelled) right after
// its job is recorded.
type goneStore struct {
	Store
	cancel context.CancelFunc
}

// CreateJob records j, then cancels the client's context.
func (g goneStore) CreateJob(ctx context.Context, j *jobs.Job) error {
	err := g.Store.CreateJob(ctx, j)
	g.cancel()
	return err
}

// ctxEmitter fails, as the Broker's client does, once the context is done.
type ctxEmitter struct{ *recorder }

// Emit records ev unless ctx is done.
func (e ctxEmitter) Emit(ctx context.Context, ev event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return e.recorder.Emit(ctx, ev)
}

// TestClientGoneAfterRecord: a client that goes away once its job is recorded (a reset between
// client and server) still leaves a job that is emitted as created and placed normally; its
// retry with the same key replays that job and creates nothing. Queued and direct submits.
func TestClientGoneAfterRecord(t *testing.T) {
	check := func(t *testing.T, h *Handler, rec *recorder, wantStatus jobs.Status) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		h.Store = goneStore{Store: h.Store, cancel: cancel}
		h.Emitter = ctxEmitter{rec}
		h.Submit(ctx, admin, request(), "gone") // its answer never reaches the client
		again, replayed, err := h.Submit(context.Background(), admin, request(), "gone")
		if err != nil || !replayed {
			t.Fatalf("retry: replayed=%v %v", replayed, err)
		}
		if again.Status != wantStatus {
			t.Errorf("the job is %s (%s: %s), want %s", again.Status, again.Reason, again.Message, wantStatus)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		// Announced by the first submit, and again by the replay under the same id.
		ids := map[string]int{}
		for _, e := range rec.got {
			if e.Type() == events.TypeJobCreated && e.Subject() == again.ID {
				ids[e.ID()]++
			}
		}
		if want := events.JobEventID(events.TypeJobCreated, again.ID, 1); len(ids) != 1 || ids[want] == 0 {
			t.Errorf("job.created ids %v, want only %s", ids, want)
		}
	}
	t.Run("queued", func(t *testing.T) {
		f := newQueue(t, "", 1, &fakeInstance{name: "arm-1", capacity: 1, weight: 1})
		check(t, f.handlers[0], f.events, jobs.StatusPending)
	})
	t.Run("direct", func(t *testing.T) {
		h, _, rec := newHandler(t)
		check(t, h, rec, jobs.StatusPending)
	})
}

// dropEmitter loses every event while drop is set, as a process killed before it emits does.
type dropEmitter struct {
	*recorder
	drop *bool
}

// Emit records ev unless drop is set.
func (e dropEmitter) Emit(ctx context.Context, ev event.Event) error {
	if *e.drop {
		return nil
	}
	return e.recorder.Emit(ctx, ev)
}

// TestReplayAnnouncesAgain: when the process that recorded a job died before announcing it, the
// client's retry with the same key announces it (job.created, under the id it would have had).
func TestReplayAnnouncesAgain(t *testing.T) {
	h, _, rec := newHandler(t)
	drop := true
	h.Emitter = dropEmitter{rec, &drop}
	first, _, err := h.Submit(context.Background(), admin, request(), "died")
	if err != nil {
		t.Fatal(err)
	}
	drop = false
	if _, replayed, err := h.Submit(context.Background(), admin, request(), "died"); err != nil || !replayed {
		t.Fatalf("retry: replayed=%v %v", replayed, err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, e := range rec.got {
		if e.Type() == events.TypeJobCreated && e.Subject() == first.ID {
			got = append(got, e.ID())
		}
	}
	if want := []string{first.ID + ".created.1"}; !slices.Equal(got, want) {
		t.Errorf("job.created ids after the replay %v, want %v", got, want)
	}
}
