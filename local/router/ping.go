package router

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
)

// cronParser is the parser of Knative's PingSource (webhook and mt-ping adapter alike).
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// pingRetries and pingBackoff are the mt-ping adapter's: 5 retries, 0.1 s doubling.
const (
	pingRetries = 5
	pingBackoff = 50 * time.Millisecond
)

// ErrNoPingSource is returned by Ping for a PingSource not in the configuration.
var ErrNoPingSource = errors.New("no such pingsource")

func newPingSource(p *sourcesv1.PingSource, dests *destinations) (*pingSource, error) {
	schedule := p.Spec.Schedule
	if p.Spec.Timezone != "" {
		schedule = "CRON_TZ=" + p.Spec.Timezone + " " + schedule
	}
	if _, err := cronParser.Parse(schedule); err != nil {
		return nil, fmt.Errorf("schedule: %w", err)
	}
	sink, err := dests.url(p.Spec.Sink, p.Namespace)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	// The event of every tick, as the mt-ping adapter makes it; id and time are set per tick.
	ev := cloudevents.NewEvent()
	ev.SetType(sourcesv1.PingSourceEventType)
	ev.SetSource(sourcesv1.PingSourceSource(p.Namespace, p.Name))
	if o := p.Spec.CloudEventOverrides; o != nil {
		for k, v := range o.Extensions {
			ev.SetExtension(k, v)
		}
	}
	var data []byte
	switch {
	case p.Spec.DataBase64 != "":
		if data, err = base64.StdEncoding.DecodeString(p.Spec.DataBase64); err != nil {
			return nil, fmt.Errorf("dataBase64: %w", err)
		}
	case p.Spec.Data != "":
		data = []byte(p.Spec.Data)
	}
	if data != nil {
		if err := ev.SetData(p.Spec.ContentType, data); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	return &pingSource{namespace: p.Namespace, name: p.Name, schedule: schedule, sink: sink, event: ev}, nil
}

// RunPing fires every PingSource of the configuration on its schedule (or every
// WithPingInterval) until ctx is done or Drain or Close is called, then returns nil. Each tick sends one
// dev.knative.sources.ping event straight to the PingSource's sink, not through the Broker,
// retried like the mt-ping adapter does. Drain waits for sends in flight.
func (r *Router) RunPing(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range r.pings {
		sched, err := cronParser.Parse(p.schedule)
		if err != nil {
			return fmt.Errorf("pingsource %s/%s: schedule: %w", p.namespace, p.name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.pingLoop(ctx, p, sched)
		}()
	}
	wg.Wait()
	return nil
}

func (r *Router) pingLoop(ctx context.Context, p *pingSource, sched cron.Schedule) {
	for {
		wait := r.opts.pingInterval
		if wait <= 0 {
			wait = time.Until(sched.Next(time.Now()))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if !r.startPing() {
			return
		}
		// A slow sink must not delay the next tick.
		go func() {
			defer r.endPing()
			if err := r.ping(r.ctx, p); err != nil {
				r.log.Errorw("ping event lost", "pingsource", p.namespace+"/"+p.name, "error", err)
			}
		}()
	}
}

// Ping sends one event of PingSource namespace/name now, as a tick of its schedule would, and
// returns when its sink acknowledged it, the retries are exhausted or ctx is done. It returns
// ErrClosed once Drain or Close was called.
func (r *Router) Ping(ctx context.Context, namespace, name string) error {
	for _, p := range r.pings {
		if p.namespace == namespace && p.name == name {
			if !r.startPing() {
				return ErrClosed
			}
			defer r.endPing()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(r.ctx, cancel)()
			return r.ping(ctx, p)
		}
	}
	return fmt.Errorf("pingsource %s/%s: %w", namespace, name, ErrNoPingSource)
}

// startPing counts a ping send in, unless the router is draining or closed.
func (r *Router) startPing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return false
	}
	r.pinging++
	return true
}

func (r *Router) endPing() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pinging--
	r.wakeIdle()
}

// ping sends one ping event of p, with retries.
func (r *Router) ping(ctx context.Context, p *pingSource) error {
	ev := p.event.Clone()
	ev.SetID(uuid.NewString())
	ev.SetTime(time.Now())
	if drop := r.drop.Load(); drop != nil && (*drop)(p.name, ev) {
		r.log.Debugw("ping dropped on purpose", "pingsource", p.namespace+"/"+p.name)
		return nil
	}
	for retry := 0; ; retry++ {
		o := r.send(ctx, p.sink, ev, r.opts.requestTimeout, false, false, nil)
		if o.ok() {
			r.stats.pings.Add(1)
			return nil
		}
		if !retryable(o.code) || retry >= pingRetries {
			return fmt.Errorf("send to %s: status %d: %s", p.sink, o.code, o.body)
		}
		r.stats.retried.Add(1)
		t := time.NewTimer(time.Duration(float64(pingBackoff) * float64(int(1)<<(retry+1)) * r.opts.backoffScale))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

var _ http.Handler = (*Router)(nil)
