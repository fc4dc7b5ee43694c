package legacy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Doer sends an HTTP request (an *http.Client is one).
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// Error is an answer of the legacy API other than success: its status and the message of its
// {"error": …} body, plus headers to pass on (WWW-Authenticate, Retry-After).
type Error struct {
	Code    int
	Message string
	Header  http.Header
}

func (e *Error) Error() string { return e.Message }

// errJobNotFound is the predecessor's answer for a job it cannot find (500, which omni-manager
// expects).
var errJobNotFound = &Error{Code: http.StatusInternalServerError, Message: "job not found"}

// maxUpstreamBody bounds what the layer reads of one /v1 answer (a log page is at most 4 MiB of
// text, a little more as JSON).
const maxUpstreamBody = 32 << 20

// problem is the part of a /v1 problem document the layer uses.
type problem struct {
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// Call is one kind of /v1 request the layer makes: its method, its path (with {id} for the
// job id) and the function that serves it, whose base URL it is sent to. test/deploy checks
// that the HTTPRoute of config/ sends each one to the same function.
type Call struct {
	Method, Path, Function string
}

// The /v1 requests the layer makes.
var (
	CallCreate   = Call{http.MethodPost, "/v1/jobs", "submit"}
	CallCancel   = Call{http.MethodDelete, "/v1/jobs/{id}", "submit"}
	CallGetJob   = Call{http.MethodGet, "/v1/jobs/{id}", "query"}
	CallBatchGet = Call{http.MethodPost, "/v1/jobs:batchGet", "query"}
	CallLogs     = Call{http.MethodGet, "/v1/jobs/{id}/logs", "query"}
	// Calls lists them all.
	Calls = []Call{CallCreate, CallCancel, CallGetJob, CallBatchGet, CallLogs}
)

// call sends c for job id (if its path names one) with query q and body (JSON, if not nil) to
// the /v1 API of c's function, as the caller of in (its credentials and forwarded-for chain),
// and decodes a 2xx answer into out. Any other answer is an *Error with the /v1 status and the
// problem's detail.
func (h *Handler) call(in *http.Request, c Call, id string, q url.Values, body, out any) error {
	base := h.query
	if c.Function == "submit" {
		base = h.submit
	}
	method, path := c.Method, strings.Replace(c.Path, "{id}", url.PathEscape(id), 1)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(in.Context(), method, u, rd)
	if err != nil {
		return fmt.Errorf("build %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if a := in.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	// The /v1 API counts failed logins per client address (the rightmost public one of
	// X-Forwarded-For): pass the chain on, with the peer appended as a proxy does.
	xff := in.Header.Values("X-Forwarded-For")
	if host, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		xff = append(xff, host)
	}
	if len(xff) > 0 {
		req.Header.Set("X-Forwarded-For", strings.Join(xff, ", "))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("call %s %s: %w: %w", method, path, jobs.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody))
	if err != nil {
		return fmt.Errorf("read %s %s: %w: %w", method, path, jobs.ErrUnavailable, err)
	}
	if resp.StatusCode >= 300 {
		var p problem
		_ = json.Unmarshal(b, &p)
		msg := p.Detail
		if msg == "" {
			msg = p.Title
		}
		if msg == "" {
			msg = strings.TrimSpace(string(b))
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		e := &Error{Code: resp.StatusCode, Message: msg, Header: http.Header{}}
		for _, k := range []string{"WWW-Authenticate", "Retry-After"} {
			if v := resp.Header.Get(k); v != "" {
				e.Header.Set(k, v)
			}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// notFound turns a 404 of the /v1 API into the predecessor's "job not found".
func notFound(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Code == http.StatusNotFound {
		return errJobNotFound
	}
	return err
}
