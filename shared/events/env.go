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
	return NewSender(e.Sink)
}
