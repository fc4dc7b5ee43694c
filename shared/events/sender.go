package events

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// Sender posts events to a Broker's ingress (or any CloudEvents sink).
type Sender struct {
	client cloudevents.Client
	// TokenFile, if set and present, holds the OIDC token the sender presents (Authorization:
	// Bearer), read at each send since it is rotated: the token Knative's SinkBinding mounts
	// when the Eventing feature authentication-oidc is enabled, which the Broker checks against
	// its EventPolicies.
	TokenFile string
	// Attempts bounds the sends of one event: a refusal the Broker may not repeat (a
	// connection error, 404, 408, 409, 429, 5xx — the codes a Knative Broker's own delivery
	// retries) is retried with exponential backoff from Backoff. Default 6 (about 6 s in all).
	Attempts int
	// Backoff is the wait before the first retry, doubled for each next one. Default 100 ms.
	Backoff time.Duration
}

// NewSender returns a Sender posting to url (K_SINK or the Broker URL).
func NewSender(url string) (*Sender, error) {
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(url))
	if err != nil {
		return nil, fmt.Errorf("events sender for %s: %w", url, err)
	}
	return &Sender{client: c}, nil
}

// Emit sends e and returns an error unless the sink acknowledged it.
func (s *Sender) Emit(ctx context.Context, e event.Event) error {
	if s.TokenFile != "" {
		if b, err := os.ReadFile(s.TokenFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			ctx = cehttp.WithCustomHeader(ctx, http.Header{"Authorization": {"Bearer " + string(bytes.TrimSpace(b))}})
		}
	}
	attempts, wait := s.Attempts, s.Backoff
	if attempts <= 0 {
		attempts = 6
	}
	if wait <= 0 {
		wait = 100 * time.Millisecond
	}
	for n := 1; ; n++ {
		res := s.client.Send(ctx, e)
		if protocol.IsACK(res) {
			return nil
		}
		if n >= attempts || !retryable(res) {
			return fmt.Errorf("send %s %s (attempt %d): %w", e.Type(), e.ID(), n, res)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("send %s %s (attempt %d): %w (then %w)", e.Type(), e.ID(), n, res, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// retryable reports whether a failed send may succeed if repeated: no HTTP answer at all, or one
// of the codes a Knative Broker's delivery retries (404 while a Broker is being created, 408,
// 409, 429, 5xx such as "delivery queue full").
func retryable(res protocol.Result) bool {
	var hr *cehttp.Result
	if !protocol.ResultAs(res, &hr) {
		return true
	}
	c := hr.StatusCode
	return c == http.StatusNotFound || c == http.StatusRequestTimeout || c == http.StatusConflict || c == http.StatusTooManyRequests || c >= 500
}

// Discard is an emitter that drops events (for a function run without a Broker).
type Discard struct{}

// Emit drops e.
func (Discard) Emit(context.Context, event.Event) error { return nil }
