package router

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/rickb777/date/period"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	"knative.dev/eventing/pkg/kncloudevents/attributes"
)

const (
	// ttlAttribute counts the hops an event may still take through a Broker; replies keep the
	// value of the event they answer, and the ingress decrements it.
	ttlAttribute = "knativebrokerttl"
	// maxTTL is the TTL the ingress gives an event that has none (Knative's MAX_TTL default).
	maxTTL = 255
	// arrivalTimeAttribute is set by the ingress, as in Knative.
	arrivalTimeAttribute = "knativearrivaltime"
	// errorDataBytes is how much of a failed response body fits, base64-encoded, into
	// knativeerrordata (at most attributes.KnativeErrorDataExtensionMaxLength characters).
	errorDataBytes = attributes.KnativeErrorDataExtensionMaxLength / 4 * 3
)

// nextTTL returns the TTL an arriving event continues with, as Knative's ingress computes it.
func nextTTL(ev cloudevents.Event) int32 {
	raw, ok := ev.Extensions()[ttlAttribute]
	if !ok {
		return maxTTL
	}
	ttl, err := types.ToInteger(raw)
	if err != nil {
		return maxTTL
	}
	return max(ttl-1, 0)
}

// policy turns a DeliverySpec into a retryPolicy, as Knative's RetryConfigFromDeliverySpec
// does: no spec, no retries; a backoff only when both policy and delay are set (otherwise
// retries are immediate); exponential delay·2ⁿ and linear delay·n, n = 0 for the first retry.
func (r *Router) policy(spec *eventingduckv1.DeliverySpec) (retryPolicy, error) {
	p := retryPolicy{backoff: func(int) time.Duration { return 0 }, timeout: r.opts.requestTimeout}
	if spec == nil {
		return p, nil
	}
	if spec.Retry != nil {
		p.retries = int(*spec.Retry)
	}
	if spec.BackoffPolicy != nil && spec.BackoffDelay != nil {
		delay, err := parseDuration(*spec.BackoffDelay)
		if err != nil {
			return p, fmt.Errorf("backoffDelay: %w", err)
		}
		scale := r.opts.backoffScale
		switch *spec.BackoffPolicy {
		case eventingduckv1.BackoffPolicyExponential:
			p.backoff = func(n int) time.Duration {
				return time.Duration(float64(delay) * math.Exp2(float64(n)) * scale)
			}
		case eventingduckv1.BackoffPolicyLinear:
			p.backoff = func(n int) time.Duration {
				return time.Duration(float64(delay) * float64(n) * scale)
			}
		}
	}
	if spec.Timeout != nil {
		d, err := parseDuration(*spec.Timeout)
		if err != nil {
			return p, fmt.Errorf("timeout: %w", err)
		}
		p.timeout = d
	}
	return p, nil
}

// parseDuration parses an ISO-8601 duration such as PT0.2S, as Knative does.
func parseDuration(s string) (time.Duration, error) {
	p, err := period.Parse(s)
	if err != nil {
		return 0, err
	}
	d, _ := p.Duration()
	return d, nil
}

// retryable reports whether Knative retries a delivery that ended with status code
// (0: transport error).
func retryable(code int) bool {
	switch {
	case code == 0, code >= 500:
		return true
	case code == http.StatusNotFound, code == http.StatusRequestTimeout,
		code == http.StatusConflict, code == http.StatusTooManyRequests:
		return true
	}
	return false
}

type phase int

const (
	toSubscriber phase = iota
	toBroker           // the subscriber's reply, back into the Broker
	toDeadLetter
)

// delivery is one event on its way to one Trigger's subscriber.
type delivery struct {
	trigger *trigger
	event   cloudevents.Event // without the TTL
	ttl     int32
	phase   phase
	attempt int                // attempts failed in this phase
	reply   *cloudevents.Event // phase toBroker
	failure outcome            // why the event goes to the dead-letter sink
}

// outcome is the result of one attempt.
type outcome struct {
	code  int    // HTTP status; 0 for a transport error
	body  []byte // response body (failures), or an error text
	dest  *url.URL
	reply *cloudevents.Event
}

func (o outcome) ok() bool { return o.code >= 200 && o.code < 300 }

func (r *Router) work() {
	defer r.wg.Done()
	for {
		select {
		case <-r.stop:
			return
		case d := <-r.queue:
			r.step(d)
		}
	}
}

// step makes attempts for d until it is done or has to wait for a retry.
func (r *Router) step(d *delivery) {
	for {
		var o outcome
		switch d.phase {
		case toSubscriber:
			if drop := r.drop.Load(); drop != nil && d.attempt == 0 && (*drop)(d.trigger.name, d.event) {
				r.log.Debugw("delivery dropped on purpose", "trigger", d.trigger.namespace+"/"+d.trigger.name, "id", d.event.ID())
				r.done(d)
				return
			}
			o = r.send(r.ctx, d.trigger.subscriber, d.event, d.trigger.retry.timeout, d.trigger.structured, true, http.Header{
				"Prefer":       {"reply"},
				"Kn-Namespace": {d.trigger.namespace},
			})
			if o.ok() {
				r.stats.delivered.Add(1)
				if o.reply == nil {
					r.done(d)
					return
				}
				d.phase, d.attempt, d.reply = toBroker, 0, o.reply
				continue
			}
		case toBroker:
			o = r.reingest(d)
			if o.ok() {
				r.stats.replies.Add(1)
				r.done(d)
				return
			}
		case toDeadLetter:
			if d.trigger.deadLetter == nil {
				r.log.Errorw("event lost: delivery failed and the trigger has no dead-letter sink",
					"trigger", d.trigger.namespace+"/"+d.trigger.name, "id", d.event.ID(), "type", d.event.Type(),
					"code", d.failure.code, "destination", d.failure.dest.String())
				r.lose(d)
				return
			}
			o = r.send(r.ctx, d.trigger.deadLetter, d.event, d.trigger.retry.timeout, d.trigger.structured, false, nil,
				errorExtensions(d.failure)...)
			if o.ok() {
				r.log.Warnw("event dead-lettered", "trigger", d.trigger.namespace+"/"+d.trigger.name,
					"id", d.event.ID(), "type", d.event.Type(), "code", d.failure.code, "destination", d.failure.dest.String())
				r.stats.deadLettered.Add(1)
				r.done(d)
				return
			}
		}

		if retryable(o.code) && d.attempt < d.trigger.retry.retries && !r.isClosed() {
			r.retry(d, d.trigger.retry.backoff(d.attempt))
			return
		}
		if d.phase == toDeadLetter || r.isClosed() {
			msg := "event lost: dead-letter sink failed"
			if r.isClosed() {
				msg = "event lost: router closed"
			}
			r.log.Errorw(msg, "trigger", d.trigger.namespace+"/"+d.trigger.name,
				"id", d.event.ID(), "type", d.event.Type(), "code", o.code, "destination", o.dest.String())
			r.lose(d)
			return
		}
		d.phase, d.attempt, d.failure = toDeadLetter, 0, o
	}
}

// retry schedules the next attempt of d after wait.
func (r *Router) retry(d *delivery, wait time.Duration) {
	d.attempt++
	r.stats.retried.Add(1)
	if wait <= 0 {
		r.queue <- d
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.lose0(d)
		return
	}
	r.timers[d] = time.AfterFunc(wait, func() {
		r.mu.Lock()
		_, mine := r.timers[d]
		delete(r.timers, d)
		r.mu.Unlock()
		if mine {
			r.queue <- d // never blocks: d still holds its slot
		}
	})
}

// reingest sends d's reply into the Broker of its Trigger, with the TTL of the event it answers.
func (r *Router) reingest(d *delivery) outcome {
	reply := d.reply.Clone()
	k := d.trigger.broker.key
	o := outcome{code: http.StatusAccepted, dest: brokerURL(k.namespace, k.name)}
	if err := reply.Context.SetExtension(ttlAttribute, d.ttl); err != nil {
		o.code, o.body = http.StatusInternalServerError, []byte(err.Error())
		return o
	}
	err := r.ingest(k, reply, true)
	switch {
	case err == nil:
	case errors.Is(err, ErrBusy), errors.Is(err, ErrClosed):
		o.code, o.body = http.StatusServiceUnavailable, []byte(err.Error())
	default:
		o.code, o.body = http.StatusBadRequest, []byte(err.Error())
	}
	return o
}

// done releases d's slot.
func (r *Router) done(*delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.release()
}

// lose gives d up (d may be nil for a stopped timer).
func (r *Router) lose(d *delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lose0(d)
}

func (r *Router) lose0(*delivery) {
	r.stats.lost.Add(1)
	r.release()
}

// release frees one slot; r.mu is held.
func (r *Router) release() {
	r.inflight--
	r.wakeIdle()
}

// wakeIdle signals Drain when nothing is in flight; r.mu is held.
func (r *Router) wakeIdle() {
	if r.inflight == 0 && r.pinging == 0 {
		for _, ch := range r.idle {
			close(ch)
		}
		r.idle = nil
	}
}

// errorExtensions are the transformers that add Knative's error extensions to a dead letter.
func errorExtensions(o outcome) []binding.Transformer {
	body := o.body
	if len(body) > errorDataBytes {
		body = body[:errorDataBytes]
	}
	code := o.code
	if code == 0 {
		code = http.StatusInternalServerError // as Knative records a transport error
	}
	dest := url.URL{}
	if o.dest != nil {
		dest = *o.dest
	}
	return attributes.KnativeErrorTransformers(dest, code, base64.StdEncoding.EncodeToString(body))
}

// send makes one attempt to deliver ev to dest. With wantReply, a CloudEvent in a 2xx response
// is returned as the reply and any other non-empty 2xx body is a failure (502), as with the
// Broker filter; otherwise a 2xx body is ignored, as with the Knative dispatcher.
func (r *Router) send(parent context.Context, dest *url.URL, ev cloudevents.Event, timeout time.Duration, structured, wantReply bool,
	header http.Header, transformers ...binding.Transformer) outcome {
	o := outcome{dest: dest}
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest.String(), nil)
	if err != nil {
		o.body = []byte("dispatch error: " + err.Error())
		return o
	}
	for k, v := range header {
		req.Header[k] = v
	}
	encCtx := ctx
	if structured {
		encCtx = binding.WithForceStructured(ctx)
	}
	if err := cehttp.WriteRequest(encCtx, binding.ToMessage(&ev), req, transformers...); err != nil {
		o.body = []byte("dispatch error: " + err.Error())
		return o
	}
	resp, err := r.client.Do(req)
	if err != nil {
		o.body = []byte("dispatch error: " + err.Error())
		return o
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, r.opts.maxEventBytes+1))
	o.code = resp.StatusCode
	if !o.ok() {
		if err != nil {
			body = fmt.Appendf(nil, "dispatch resulted in status %q. Could not read response body: error: %s", resp.Status, err)
		}
		o.body = body
		return o
	}
	if err != nil {
		o.code, o.body = 0, []byte("dispatch error: reading response: "+err.Error())
		return o
	}
	if !wantReply {
		return o
	}
	if int64(len(body)) > r.opts.maxEventBytes {
		o.code, o.body = http.StatusBadGateway, []byte("reply larger than the maximum event size")
		return o
	}
	m := cehttp.NewMessage(resp.Header, io.NopCloser(bytes.NewReader(body)))
	defer m.Finish(nil)
	if m.ReadEncoding() == binding.EncodingUnknown {
		if len(body) > 0 {
			o.code, o.body = http.StatusBadGateway, body
		}
		return o
	}
	reply, err := binding.ToEvent(ctx, m)
	if err != nil {
		o.code, o.body = http.StatusBadGateway, []byte("malformed reply event: "+err.Error())
		return o
	}
	o.reply = reply
	return o
}
