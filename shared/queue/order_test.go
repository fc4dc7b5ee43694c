package queue_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func job(id, service, class string, created time.Duration) *jobs.Job {
	return &jobs.Job{ID: id, Service: service, Task: "buildrpm", CreatedAt: t0.Add(created),
		Status: jobs.StatusQueued, Queue: &jobs.Queue{Class: class, Slots: 1}}
}

func ids(js []*jobs.Job) []string {
	out := make([]string, len(js))
	for i, j := range js {
		out[i] = j.ID
	}
	return out
}

func mustParse(t *testing.T, y string) *queue.Policy {
	t.Helper()
	p, err := queue.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOrder(t *testing.T) {
	p := mustParse(t, `
services:
  a: {weight: 1, maxClass: urgent}
  b: {weight: 2, maxClass: urgent}
aging: 10m
`)
	for name, tc := range map[string]struct {
		waiting []*jobs.Job
		running map[string]int
		now     time.Duration
		want    []string
	}{
		"FIFO within a service": {
			waiting: []*jobs.Job{job("a2", "a", "normal", 2), job("a1", "a", "normal", 1), job("a3", "a", "normal", 3)},
			want:    []string{"a1", "a2", "a3"},
		},
		"classes first": {
			waiting: []*jobs.Job{job("bg", "a", "background", 0), job("n", "a", "normal", 1), job("u", "b", "urgent", 2)},
			want:    []string{"u", "n", "bg"},
		},
		"weights 1 and 2 share 1:2": {
			waiting: []*jobs.Job{
				job("a1", "a", "normal", 1), job("a2", "a", "normal", 2), job("a3", "a", "normal", 3),
				job("b1", "b", "normal", 4), job("b2", "b", "normal", 5), job("b3", "b", "normal", 6), job("b4", "b", "normal", 7),
			},
			// a1 (tie at 0, older), b1 (0 < 1/1), b2 (1/2 < 1), then a 1 vs b 2/2 = 1: tie → older a2, …
			want: []string{"a1", "b1", "b2", "a2", "b3", "b4", "a3"},
		},
		"running slots count": {
			waiting: []*jobs.Job{job("a1", "a", "normal", 1), job("b1", "b", "normal", 2)},
			running: map[string]int{"a": 0, "b": 3},
			// b: 3/2 = 1.5 > a: 0 → a first
			want: []string{"a1", "b1"},
		},
		"aging lifts background above a stream of urgent": {
			waiting: []*jobs.Job{job("old-bg", "a", "background", 0), job("u1", "b", "urgent", 25*time.Minute), job("n1", "a", "normal", 24*time.Minute)},
			now:     26 * time.Minute, // old-bg waited 2 agings: rank 2-2 = 0, as urgent; older than u1
			want:    []string{"old-bg", "u1", "n1"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := ids(p.Order(tc.waiting, tc.running, t0.Add(tc.now)))
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("order (-want +got):\n%s", d)
			}
		})
	}
}

// TestOrderNoStarvation: a background job under a continuous stream of urgent ones (one new
// urgent job each minute, each dispatched as the next slot frees) is dispatched within
// 2 × aging + the stream's spacing.
func TestOrderNoStarvation(t *testing.T) {
	p := mustParse(t, "aging: 10m\nservices: {'*': {maxClass: urgent}}\n")
	waiting := []*jobs.Job{job("bg", "a", "background", 0)}
	for minute := 0; minute < 60; minute++ {
		now := t0.Add(time.Duration(minute) * time.Minute)
		waiting = append(waiting, job(fmt.Sprintf("u%02d", minute), "b", "urgent", time.Duration(minute)*time.Minute))
		next := p.Order(waiting, nil, now)[0]
		if next.ID == "bg" {
			if wait := now.Sub(next.CreatedAt); wait > 21*time.Minute {
				t.Errorf("background dispatched after %v, want at most 21m", wait)
			}
			return
		}
		waiting = waiting[1:] // the urgent job at the head went (bg stays first in the slice)
		waiting[0] = job("bg", "a", "background", 0)
	}
	t.Fatal("background job never dispatched under a stream of urgent ones")
}

func TestClass(t *testing.T) {
	p := mustParse(t, "services: {a: {defaultClass: background, maxClass: normal}}\n")
	for _, tc := range []struct {
		service, asked, want string
		err                  error
	}{
		{"a", "", "background", nil},
		{"a", "normal", "normal", nil},
		{"a", "urgent", "", jobs.ErrForbidden},
		{"other", "", "normal", nil},
		{"other", "urgent", "", jobs.ErrForbidden},
		{"other", "background", "background", nil},
	} {
		got, err := p.Class(tc.service, tc.asked)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Class(%s, %q) = %q, %v; want %q, %v", tc.service, tc.asked, got, err, tc.want, tc.err)
		}
	}
	if _, err := p.Class("a", "nope"); !jobs.IsInvalid(err) {
		t.Errorf("unknown class: %v, want an InvalidError", err)
	}
}

func TestConcurrencyKeyAndSlots(t *testing.T) {
	p := mustParse(t, `
jobTypes:
  buildimagefromrelease: {slots: 3, concurrencyKey: "{{.domain}}/{{.parameters.release}}/{{.arch}}", concurrencyLimit: 1}
instances:
  arm-1: {capacity: 2}
`)
	key, limit, err := p.ConcurrencyKey("buildimagefromrelease", "aarch64", "openEuler", "svc", map[string]any{"release": "24.03"})
	if err != nil || key != "buildimagefromrelease/openEuler/24.03/aarch64" || limit != 1 {
		t.Errorf("ConcurrencyKey = %q, %d, %v", key, limit, err)
	}
	if k, _, _ := p.ConcurrencyKey("buildrpm", "aarch64", "d", "s", nil); k != "" {
		t.Errorf("a job type without key has key %q", k)
	}
	if p.Slots("buildimagefromrelease") != 3 || p.Slots("buildrpm") != 1 {
		t.Errorf("Slots = %d, %d", p.Slots("buildimagefromrelease"), p.Slots("buildrpm"))
	}
	if p.Capacity("arm-1", 200) != 2 || p.Capacity("x86-1", 200) != 200 {
		t.Errorf("Capacity override not applied")
	}
	if _, err := queue.Parse([]byte("defaultClass: nope\n")); err == nil {
		t.Error("unknown default class accepted")
	}
}
