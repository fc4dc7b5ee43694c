// Command event-display is the image of the Knative Service omni-dead-letter
// (config/300-broker.yaml): it logs every CloudEvent it receives — attributes, extensions (the
// Broker's knativeerrorcode, knativeerrordest and knativeerrordata among them) and data — as one
// JSON line, where an operator finds it and can replay it, and answers 2xx.
//
// It stands in for Knative's own event_display (knative.dev/eventing/cmd/event_display), which ko
// cannot build from this module: that program's OpenTelemetry dependencies are not in go.mod.
// It is a main package of this module so that `ko apply -f config/` builds it like the functions
// (same base image, platforms and version ldflags).
package main

import (
	"context"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// maxData bounds the logged data of one event (the Broker bounds what it sends anyway).
const maxData = 64 << 10

// settings are what event-display reads from its environment: the runtime's only.
type settings struct{ runtime.Env }

func main() { runtime.Main("event-display", build) }

func build(_ context.Context, _ *settings) (*runtime.Function, error) {
	h := runtime.CloudEvents(display)
	return &runtime.Function{
		Name:   "event-display",
		Routes: func(mux *http.ServeMux) { mux.Handle("POST /{$}", h) },
	}, nil
}

// display logs e and accepts it.
func display(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	data := e.Data()
	truncated := len(data) > maxData
	if truncated {
		data = data[:maxData]
	}
	fields := []any{"id", e.ID(), "type", e.Type(), "source", e.Source(), "subject", e.Subject(),
		"datacontenttype", e.DataContentType(), "extensions", e.Extensions(),
		"data", string(data), "dataTruncated", truncated}
	if !e.Time().IsZero() {
		fields = append(fields, "time", e.Time())
	}
	logging.FromContext(ctx).Infow("event", fields...)
	return nil, protocol.ResultACK
}
