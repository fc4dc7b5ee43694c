// Package client speaks the public HTTP API of omni-orchestrator (docs/api.md) for omnictl. It
// links only the standard library: the CLI must install anywhere without the server's
// dependencies (test/deps holds it to that).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one omni-orchestrator API as one user.
type Client struct {
	// BaseURL is the API's base URL, e.g. http://127.0.0.1:8088 (without /v1).
	BaseURL string
	// User and Password are the basic-auth credentials.
	User, Password string
	// HTTP sends the requests. Default: a client whose requests wait at most 30 s for the
	// answer's headers (a follow stream's body may then last as long as the log).
	HTTP *http.Client
	// UserAgent is sent with every request. Default: omnictl.
	UserAgent string
}

// New returns a client of the API at baseURL.
func New(baseURL, user, password string) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 30 * time.Second
	return &Client{
		BaseURL:  strings.TrimRight(baseURL, "/"),
		User:     user,
		Password: password,
		HTTP:     &http.Client{Transport: t},
	}
}

// Error is an answer of the API other than a success: its problem document (RFC 9457).
type Error struct {
	// Status is the HTTP status code.
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	// Field names the offending input field of a 400.
	Field string `json:"field"`
	// RetryAfter is the answer's Retry-After, when it had one.
	RetryAfter time.Duration `json:"-"`
}

// Error returns one readable line: the status, and the detail (which names the field of a 400).
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, cmpOr(e.Title, http.StatusText(e.Status)))
	if e.Field != "" && !strings.Contains(e.Detail, e.Field) {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	if d := strings.Join(strings.Fields(e.Detail), " "); d != "" {
		b.WriteString(": " + d)
	}
	return b.String()
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// newRequest builds an authenticated request of path (which starts with /).
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	u := c.BaseURL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", cmpOr(c.UserAgent, "omnictl"))
	if c.User != "" || c.Password != "" {
		req.SetBasicAuth(c.User, c.Password)
	}
	return req, nil
}

// send sends req and returns the response when its status is 2xx; otherwise the *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Redacted(), unwrapURLError(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the method and URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readError turns a non-2xx answer into an *Error.
func readError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" {
		_ = json.Unmarshal(b, e)
		e.Status = resp.StatusCode
	} else if len(b) > 0 && len(b) < 512 {
		e.Detail = string(b)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	if e.Status == http.StatusUnauthorized && e.Detail == "" {
		e.Detail = "wrong or missing credentials (omnictl login, or OMNI_USER / OMNI_PASSWORD)"
	}
	return e
}

// do sends a JSON request and decodes the JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any, header ...string) (*http.Response, error) {
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return nil, fmt.Errorf("decode the answer of %s %s: %w", method, path, err)
		}
	}
	return resp, nil
}

// retryable reports whether err is worth another try of an idempotent read: the network, or
// an answer saying the server is briefly unable.
func retryable(err error) bool {
	switch StatusOf(err) {
	case 0:
		var ne net.Error
		// Refused, reset and timed-out connections are net.Errors.
		return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
			errors.Is(err, net.ErrClosed)
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
