package filewatch

import (
	"sync"
	"sync/atomic"
)

// Value holds the last good result of a load function: Reload loads again and, if that
// succeeds, makes the result current; a failed load keeps the previous one. Readers call Current
// once per request and use that value to the end, so a reload never changes what they hold.
type Value[T any] struct {
	load func() (*T, error)
	cur  atomic.Pointer[T]
	mu   sync.Mutex // serialises reloads, so an older load never replaces a newer one

	errMu   sync.Mutex
	lastErr error

	// OnReload, a test hook set before watching starts, sees every reload attempt.
	OnReload func(error)
}

// NewValue returns a Value that loads with load; call Reload for the first load.
func NewValue[T any](load func() (*T, error)) *Value[T] { return &Value[T]{load: load} }

// Current returns the value loaded last (nil before the first successful load).
func (v *Value[T]) Current() *T { return v.cur.Load() }

// Store makes x current, as a successful load would.
func (v *Value[T]) Store(x *T) { v.cur.Store(x) }

// Err returns the error of the last reload attempt, nil if it succeeded.
func (v *Value[T]) Err() error {
	v.errMu.Lock()
	defer v.errMu.Unlock()
	return v.lastErr
}

// Reload loads again and, if that succeeds, makes the result current.
func (v *Value[T]) Reload() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	x, err := v.load()
	if err == nil {
		v.cur.Store(x)
	}
	v.errMu.Lock()
	v.lastErr = err
	v.errMu.Unlock()
	if v.OnReload != nil {
		v.OnReload(err)
	}
	return err
}
