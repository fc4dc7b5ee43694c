package jobs

import (
	"errors"
	"fmt"
	"time"
)

// The sentinel errors of the project. One function (shared/httpapi.Status) maps them to HTTP.
var (
	// ErrNotFound: the job (or other object) does not exist, or the caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object with that key already exists.
	ErrExists = errors.New("already exists")
	// ErrConflict: a concurrent writer changed the object; retry.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: a dependency (store, cluster) is unreachable; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrUnauthenticated: no credentials, or wrong ones.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: authenticated, but the role does not allow the action.
	ErrForbidden = errors.New("forbidden")
	// ErrTooMany: a limit (concurrent streams, failed logins, pushed log bytes) is reached; retry later.
	ErrTooMany = errors.New("too many requests")
)

// NotFound is the one error for a job that does not exist or that the caller may not see: the
// API promises the two are indistinguishable, so both have this very text.
func NotFound(id string) error { return fmt.Errorf("job %s: %w", id, ErrNotFound) }

// InvalidError is bad input; Field names the offending field (JSON pointer or parameter name).
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "invalid input: " + e.Reason
	}
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Invalid returns an *InvalidError for field.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is or wraps an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// LimitError is ErrTooMany with the time after which a retry may succeed (HTTP Retry-After).
type LimitError struct {
	// Reason says which limit was reached.
	Reason string
	// After is how long to wait before retrying (at least a second on the wire).
	After time.Duration
}

func (e *LimitError) Error() string { return fmt.Sprintf("too many requests: %s", e.Reason) }

// Unwrap makes a *LimitError match ErrTooMany.
func (e *LimitError) Unwrap() error { return ErrTooMany }

// TooMany returns a *LimitError: retry after after.
func TooMany(after time.Duration, format string, args ...any) error {
	return &LimitError{Reason: fmt.Sprintf(format, args...), After: after}
}
