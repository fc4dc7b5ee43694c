package runtime

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// MaxEventBytes bounds the body of an incoming CloudEvent.
const MaxEventBytes = 4 << 20

// EventFunc handles one CloudEvent, in the shape of sdk-go receivers: a reply event (or nil) and
// a result: nil or protocol.ResultACK for 2xx, cehttp.NewResult(code, …) for a chosen status, any
// other error for a 500 (the Broker retries it).
type EventFunc func(ctx context.Context, e event.Event) (*event.Event, protocol.Result)

// CloudEvents returns an http.Handler that decodes one CloudEvent per request (binary or
// structured mode) and answers with fn's result: the status code, the reply event if any (binary
// mode), or the result's message as a text body, which the Broker keeps in a dead letter's
// knativeerrordata. Each event runs under its own request's context. (sdk-go's receive handler
// passes events through a shared channel, so an event may run under another request's context.)
func CloudEvents(_ context.Context, fn EventFunc) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxEventBytes)
		m := cehttp.NewMessageFromHttpRequest(r)
		defer m.Finish(nil)
		var reply *event.Event
		var res protocol.Result
		if e, err := binding.ToEvent(r.Context(), m); err != nil {
			res = cehttp.NewResult(http.StatusBadRequest, "not a CloudEvent: %v", err)
		} else {
			reply, res = fn(r.Context(), *e)
		}
		code, msg := http.StatusOK, ""
		var hr *cehttp.Result
		switch {
		case protocol.ResultAs(res, &hr):
			code = hr.StatusCode
			if code >= 300 || code < 200 {
				msg = fmt.Sprintf(hr.Format, hr.Args...)
			}
		case !protocol.IsACK(res):
			code, msg = http.StatusInternalServerError, res.Error()
		}
		if reply != nil && code < 300 {
			if err := cehttp.WriteResponseWriter(r.Context(), binding.ToMessage(reply), code, w); err == nil {
				return
			}
		}
		if msg != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, msg)
	}), nil
}
