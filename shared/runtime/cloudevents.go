package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// MaxEventBytes bounds the body of an incoming CloudEvent.
const MaxEventBytes = 4 << 20

// EventFunc handles one CloudEvent, in the shape of sdk-go receivers: a reply event (or nil) and
// a result. nil or protocol.ResultACK answers 2xx; any other error is mapped by EventStatus
// (an *InvalidError is 400, never retried; a conflict 409 and an unavailable dependency 503,
// both retried; anything else 500, retried and logged).
type EventFunc func(ctx context.Context, e event.Event) (*event.Event, protocol.Result)

// CloudEvents returns the one CloudEvents edge of every event function: an http.Handler that
// decodes one CloudEvent per request (binary or structured mode) and answers with fn's result
// as EventStatus maps it: the status code, the reply event if any (binary mode), or the error's
// message as a text body, which the Broker keeps in a dead letter's knativeerrordata. Each event
// runs under its own request's context. (sdk-go's receive handler passes events through a
// shared channel, so an event may run under another request's context.)
func CloudEvents(fn EventFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, MaxEventBytes)
		m := cehttp.NewMessageFromHttpRequest(r)
		defer m.Finish(nil)
		var reply *event.Event
		var res protocol.Result
		e, err := binding.ToEvent(r.Context(), m)
		if err != nil {
			res = jobs.Invalid("", "not a CloudEvent: %v", err)
		} else {
			reply, res = fn(r.Context(), *e)
		}
		code, msg := EventStatus(res)
		if code == http.StatusInternalServerError && e != nil {
			logging.FromContext(r.Context()).Errorw("event failed", "event", e.ID(), "type", e.Type(),
				"subject", e.Subject(), "status", code, "error", msg)
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
	})
}

// EventStatus maps the result of an event handler to the status the Broker sees, with the
// message for a failure: the one place that does so. nil and ACK are 200; an explicit
// cehttp.Result keeps its code; an *InvalidError is 400 (dead-lettered, never retried);
// ErrConflict and ErrExists 409, ErrNotFound 404, ErrUnavailable and deadlines 503, ErrTooMany
// 429 (all retried with the Broker's backoff); anything else 500.
func EventStatus(res error) (int, string) {
	if res == nil || protocol.IsACK(res) {
		return http.StatusOK, ""
	}
	var hr *cehttp.Result
	if protocol.ResultAs(res, &hr) {
		if hr.StatusCode >= 200 && hr.StatusCode < 300 {
			return hr.StatusCode, ""
		}
		return hr.StatusCode, fmt.Sprintf(hr.Format, hr.Args...)
	}
	code := http.StatusInternalServerError
	switch {
	case jobs.IsInvalid(res):
		code = http.StatusBadRequest
	case errors.Is(res, jobs.ErrConflict), errors.Is(res, jobs.ErrExists):
		code = http.StatusConflict
	case errors.Is(res, jobs.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(res, jobs.ErrTooMany):
		code = http.StatusTooManyRequests
	case errors.Is(res, jobs.ErrUnavailable), errors.Is(res, context.DeadlineExceeded):
		code = http.StatusServiceUnavailable
	}
	return code, res.Error()
}
