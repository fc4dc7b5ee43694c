package events

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"

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
	if res := s.client.Send(ctx, e); !protocol.IsACK(res) {
		return fmt.Errorf("send %s %s: %w", e.Type(), e.ID(), res)
	}
	return nil
}

// Discard is an emitter that drops events (for a function run without a Broker).
type Discard struct{}

// Emit drops e.
func (Discard) Emit(context.Context, event.Event) error { return nil }
