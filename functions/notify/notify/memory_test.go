package notify

import (
	"fmt"
	"testing"
	"time"
)

func TestMemory(t *testing.T) {
	now := time.Date(2026, 11, 27, 19, 0, 0, 0, time.UTC)
	m := NewMemory(time.Minute, 3)
	m.now = func() time.Time { return now }

	m.Add("a")
	m.Add("b")
	m.Add("c")
	if !m.Has("a") { // a is now the most recently used
		t.Fatal("a forgotten")
	}
	m.Add("d") // pushes out the least recently used: b
	for key, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if m.Has(key) != want {
			t.Errorf("Has(%s) = %v, want %v", key, !want, want)
		}
	}
	if m.Len() != 3 {
		t.Errorf("Len = %d, want 3", m.Len())
	}
	now = now.Add(time.Minute)
	if m.Has("a") {
		t.Error("a remembered after its ttl")
	}
	m.Add("c") // refreshes c
	now = now.Add(30 * time.Second)
	if !m.Has("c") || m.Has("d") {
		t.Error("refresh: want c remembered, d expired")
	}
}

func TestMemoryDisabled(t *testing.T) {
	for _, m := range []*Memory{NewMemory(0, 10), NewMemory(time.Minute, 0)} {
		m.Add("a")
		if m != nil || m.Has("a") || m.Len() != 0 {
			t.Errorf("disabled memory remembers")
		}
	}
}

func TestMemoryBounded(t *testing.T) {
	m := NewMemory(time.Hour, 100)
	for i := range 10000 {
		m.Add(fmt.Sprint(i))
	}
	if m.Len() != 100 || len(m.byID) != 100 || !m.Has("9999") || m.Has("9899") {
		t.Errorf("Len = %d, map %d", m.Len(), len(m.byID))
	}
}
