package events

import (
	"context"

	"github.com/cloudevents/sdk-go/v2/event"
	"knative.dev/pkg/logging"
)

// SinkEnv are the settings of the Broker sender, embedded in the settings of the functions that
// emit events themselves.
type SinkEnv struct {
	// Sink is the Broker ingress URL events are sent to (K_SINK, set by a SinkBinding); empty
	// (the default) drops them.
	Sink string `envconfig:"K_SINK"`
	// TokenFile is the OIDC token presented to the Broker when it exists (Knative's SinkBinding
	// mounts it at /oidc/token when authentication-oidc is enabled). Default /oidc/token.
	TokenFile string `envconfig:"OMNI_SINK_TOKEN_FILE" default:"/oidc/token"`
}

// Emitter sends events to the Broker.
type Emitter interface {
	Emit(ctx context.Context, e event.Event) error
}

// Emitter returns the Broker sender, or one that drops events when K_SINK is unset.
func (e SinkEnv) Emitter(ctx context.Context) (Emitter, error) {
	if e.Sink == "" {
		logging.FromContext(ctx).Warn("K_SINK is not set: events are dropped")
		return Discard{}, nil
	}
	s, err := NewSender(e.Sink)
	if err != nil {
		return nil, err
	}
	s.TokenFile = e.TokenFile
	return s, nil
}
