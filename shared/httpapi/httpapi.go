// Package httpapi holds what every HTTP handler of the project shares: errors as
// application/problem+json (RFC 9457), the one mapping of sentinel errors to status codes,
// bounded JSON decoding that names the bad field, and JSON responses.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Instance is the URI of the resource concerned, e.g. the failed job.
	Instance string `json:"instance,omitempty"`
	// Field names the offending input field of a 400.
	Field string `json:"field,omitempty"`
}

// ErrTooLarge is returned by Decode when the body exceeds its limit.
var ErrTooLarge = errors.New("request body too large")

// ErrMediaType is returned by Decode when the body is not declared application/json: a
// browser's cross-site form post (text/plain, form encodings) must never be taken as a request
// of the user whose credentials it has cached.
var ErrMediaType = errors.New("unsupported media type")

// Status maps an error to its HTTP status: the one place that does so.
func Status(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return http.StatusOK
	case jobs.IsInvalid(err):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooLarge), errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrMediaType):
		return http.StatusUnsupportedMediaType
	case errors.Is(err, jobs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, jobs.ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, jobs.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, jobs.ErrExists), errors.Is(err, jobs.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, jobs.ErrTooMany):
		return http.StatusTooManyRequests
	case errors.Is(err, jobs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Error writes err as a problem document. Internal errors are logged and not shown in detail.
func Error(w http.ResponseWriter, r *http.Request, err error) {
	code := Status(err)
	p := Problem{Title: http.StatusText(code), Status: code, Detail: err.Error(), Instance: r.URL.Path}
	var ie *jobs.InvalidError
	if errors.As(err, &ie) {
		p.Field, p.Detail = ie.Field, ie.Error()
	}
	var le *jobs.LimitError
	if errors.As(err, &le) {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(le.After.Seconds())))))
	}
	if code >= 500 {
		logging.FromContext(r.Context()).Errorw("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		if code == http.StatusInternalServerError {
			p.Detail = "internal error; see the server log"
		}
	}
	WriteProblem(w, p)
}

// WriteProblem writes p.
func WriteProblem(w http.ResponseWriter, p Problem) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// JSON writes v with status code.
func JSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// Decode reads one JSON value of at most limit bytes from r's body into v, rejecting unknown
// fields and trailing data. Errors are *jobs.InvalidError naming the field, or ErrTooLarge.
func Decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if ct := r.Header.Get("Content-Type"); ct == "" {
		return fmt.Errorf("%w: no Content-Type; want application/json", ErrMediaType)
	} else if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return fmt.Errorf("%w: Content-Type %q; want application/json", ErrMediaType, ct)
	}
	if r.ContentLength > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, r.ContentLength, limit)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return decodeError(err, limit)
		}
		return jobs.Invalid("", "trailing data after the JSON body")
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: limit %d bytes", ErrTooLarge, limit)
	case errors.As(err, &te):
		return jobs.Invalid(te.Field, "want a JSON %s, got %s", te.Type, te.Value)
	case errors.As(err, &se):
		return jobs.Invalid("", "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return jobs.Invalid("", "empty body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return jobs.Invalid(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	return jobs.Invalid("", "%v", err)
}
