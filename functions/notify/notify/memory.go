package notify

import (
	"container/list"
	"sync"
	"time"
)

// Memory remembers, for a while and up to a number of entries, which (event id, receiver)
// deliveries succeeded, so that when the Broker retries an event because one receiver failed,
// the receivers that already have it are not sent it again — by this replica. Receivers still
// de-duplicate by event id: a retry on another replica, or after a restart, sends to all again.
// The least recently used entry goes first when it is full. A nil *Memory remembers nothing.
type Memory struct {
	mu   sync.Mutex
	ttl  time.Duration
	max  int
	ll   *list.List // front: most recently used; values are *memoryEntry
	byID map[string]*list.Element
	now  func() time.Time
}

type memoryEntry struct {
	key string
	at  time.Time
}

// NewMemory returns a Memory keeping up to max entries for ttl each; nil if either is ≤ 0.
func NewMemory(ttl time.Duration, max int) *Memory {
	if ttl <= 0 || max <= 0 {
		return nil
	}
	return &Memory{ttl: ttl, max: max, ll: list.New(), byID: map[string]*list.Element{}, now: time.Now}
}

// Has reports whether key was added less than ttl ago.
func (m *Memory) Has(key string) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.byID[key]
	if !ok {
		return false
	}
	if m.now().Sub(el.Value.(*memoryEntry).at) >= m.ttl {
		m.ll.Remove(el)
		delete(m.byID, key)
		return false
	}
	m.ll.MoveToFront(el)
	return true
}

// Add remembers key from now on.
func (m *Memory) Add(key string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if el, ok := m.byID[key]; ok {
		el.Value.(*memoryEntry).at = now
		m.ll.MoveToFront(el)
		return
	}
	m.byID[key] = m.ll.PushFront(&memoryEntry{key: key, at: now})
	for m.ll.Len() > m.max {
		old := m.ll.Back()
		m.ll.Remove(old)
		delete(m.byID, old.Value.(*memoryEntry).key)
	}
}

// Len returns the number of entries held (expired ones included until they are looked up or
// pushed out).
func (m *Memory) Len() int {
	if m == nil {
		return 0
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ll.Len()
}
