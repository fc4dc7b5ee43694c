// Package router is the in-process stand-in for the Knative Broker and PingSource, used by the
// local all-in-one mode and the tests (DESIGN §7). It reads the project's own Broker, Trigger
// and PingSource manifests from config/ (Load) and does what Knative does with them:
//
//   - Broker ingress: POST /<namespace>/<broker> takes a binary or structured CloudEvent and
//     answers 202; then every Trigger of that Broker whose filters match (spec.filters:
//     exact/prefix/suffix/all/any/not/cesql, or legacy spec.filter.attributes, evaluated by
//     Knative's own filter code) gets the event, asynchronously.
//   - Delivery as the Broker's channel does it: spec.delivery of the Trigger, else of the
//     Broker; retries on transport errors, 5xx, 404, 408, 409 and 429, none on other codes;
//     exponential (delay·2ⁿ) or linear (delay·n) backoff, n counting retries from 0; then the
//     dead-letter sink, with the extensions knativeerrorcode, knativeerrordata (base64 response
//     body, at most 1024 characters) and knativeerrordest.
//   - A CloudEvent in a 2xx response is a reply and is re-ingested into the Broker; a non-empty
//     2xx body that is not a CloudEvent is a failure (502), as with the Broker filter.
//   - The knativebrokerttl extension bounds reply loops (255 hops).
//   - PingSources fire dev.knative.sources.ping events to their sink on their cron schedule.
//
// Memory stays bounded on backlog: a fixed number of workers serve a queue of fixed size, and
// the ingress answers 503 when an event's deliveries do not fit, so the sender retries.
package router

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	"knative.dev/eventing/pkg/eventfilter"
	"knative.dev/pkg/logging"
)

// Errors of Ingest. The ingress answers 404, 503 and 503 for them; other errors are 400.
var (
	ErrNoBroker = errors.New("no such broker")
	ErrBusy     = errors.New("delivery queue full")
	ErrClosed   = errors.New("router is draining or closed")
)

// Options.

type options struct {
	logger         *zap.SugaredLogger
	workers        int
	queueSize      int
	backoffScale   float64
	requestTimeout time.Duration
	transport      http.RoundTripper
	pingInterval   time.Duration
	maxEventBytes  int64
}

// Option configures a Router.
type Option func(*options)

// WithLogger sets the logger; the default discards.
func WithLogger(l *zap.SugaredLogger) Option { return func(o *options) { o.logger = l } }

// WithWorkers sets how many deliveries run at once; the default is 16.
func WithWorkers(n int) Option { return func(o *options) { o.workers = n } }

// WithQueueSize bounds the deliveries held at once — queued, running or waiting to retry;
// the default is 1024. An event needs one per matching Trigger.
func WithQueueSize(n int) Option { return func(o *options) { o.queueSize = n } }

// WithBackoffScale multiplies every backoff delay (tests use 0 or a small factor); default 1.
func WithBackoffScale(f float64) Option { return func(o *options) { o.backoffScale = f } }

// WithRequestTimeout bounds one delivery attempt when spec.delivery.timeout is not set; the
// default is 5 minutes, the default request timeout of a Knative Service.
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// WithTransport sets the RoundTripper for targets given as URLs; the default is a clone of
// http.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithPingInterval makes every PingSource fire at this interval instead of its schedule
// (local mode, tests); zero, the default, keeps the schedules.
func WithPingInterval(d time.Duration) Option { return func(o *options) { o.pingInterval = d } }

// WithMaxEventSize bounds the body of an ingress request and of a response; default 4 MiB.
func WithMaxEventSize(n int64) Option { return func(o *options) { o.maxEventBytes = n } }

// Compiled configuration.

type brokerKey struct{ namespace, name string }

type broker struct {
	key      brokerKey
	triggers []*trigger
}

type trigger struct {
	namespace, name string
	broker          *broker
	filter          eventfilter.Filter
	subscriber      *url.URL
	structured      bool // spec.delivery.format: json
	retry           retryPolicy
	deadLetter      *url.URL // nil: none
}

type retryPolicy struct {
	retries int
	backoff func(retry int) time.Duration // already scaled
	timeout time.Duration
}

type pingSource struct {
	namespace, name string
	schedule        string
	sink            *url.URL
	event           event.Event
}

// Router is the in-process Broker (an http.Handler for its ingress) and PingSource.
type Router struct {
	opts    options
	log     *zap.SugaredLogger
	brokers map[brokerKey]*broker
	pings   []*pingSource
	client  *http.Client

	queue  chan *delivery
	stop   chan struct{}
	ctx    context.Context // cancelled by Close: aborts in-flight requests
	cancel context.CancelFunc
	wg     sync.WaitGroup // workers

	mu       sync.Mutex
	closed   bool
	draining bool
	inflight int // deliveries held: queued, running or waiting for a retry
	pinging  int // ping events being sent
	timers   map[*delivery]*time.Timer
	idle     []chan struct{} // closed when inflight and pinging reach 0

	stats counters
	drop  atomic.Pointer[DropFunc]
}

// DropFunc chooses deliveries to drop: it is given the name of the Trigger and the event about
// to be sent to that Trigger's subscriber (for a PingSource's tick: the PingSource's name and
// its event), and returns true to drop it.
type DropFunc func(trigger string, e event.Event) bool

// SetDrop makes the router drop, silently and for good, every delivery for which fn returns
// true, as a Broker or an ApiServerSource under load loses events (tests use it to show that
// what an event missed is repaired). fn must be safe for concurrent use; nil drops nothing.
func (r *Router) SetDrop(fn DropFunc) {
	if fn == nil {
		r.drop.Store(nil)
		return
	}
	r.drop.Store(&fn)
}

type counters struct {
	accepted, rejected, delivered, retried, replies, deadLettered, lost, pings atomic.Uint64
}

// Stats are the router's counters since New.
type Stats struct {
	Accepted     uint64 // events accepted by the ingress, replies included
	Rejected     uint64 // events refused with 503: queue full, draining or closed
	Delivered    uint64 // deliveries a subscriber acknowledged with 2xx
	Retried      uint64 // retries scheduled (subscriber, reply and dead-letter attempts)
	Replies      uint64 // replies re-ingested into their Broker
	DeadLettered uint64 // deliveries the dead-letter sink acknowledged
	Lost         uint64 // deliveries given up: no dead-letter sink, or it failed too, or Close
	Pings        uint64 // ping events their sink acknowledged
}

// New builds a Router for the Brokers, Triggers and PingSources of cfg, resolving every
// destination through resolve (Broker refs resolve to the router itself), and starts its
// workers. Every Trigger must name a Broker of cfg and every destination must resolve.
func New(cfg *Config, resolve Resolver, opts ...Option) (*Router, error) {
	o := options{
		logger:         zap.NewNop().Sugar(),
		workers:        16,
		queueSize:      1024,
		backoffScale:   1,
		requestTimeout: 5 * time.Minute,
		maxEventBytes:  4 << 20,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.transport == nil {
		o.transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	if o.workers < 1 {
		o.workers = 1
	}
	if o.queueSize < 1 {
		o.queueSize = 1
	}

	r := &Router{
		opts:    o,
		log:     o.logger,
		brokers: map[brokerKey]*broker{},
		stop:    make(chan struct{}),
		timers:  map[*delivery]*time.Timer{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())

	dests := &destinations{
		resolve:  resolve,
		brokers:  map[brokerKey]bool{},
		self:     r,
		refs:     map[Ref]*url.URL{},
		handlers: map[string]http.Handler{},
		owners:   map[string]Ref{},
	}
	if err := r.compile(cfg, dests); err != nil {
		return nil, err
	}
	r.client = &http.Client{Transport: &inProcess{handlers: dests.handlers, next: o.transport}}

	// An event needs a slot per matching Trigger: make sure the largest fan-out fits.
	for _, b := range r.brokers {
		if len(b.triggers) > r.opts.queueSize {
			r.opts.queueSize = len(b.triggers)
		}
	}
	r.queue = make(chan *delivery, r.opts.queueSize)
	for range r.opts.workers {
		r.wg.Add(1)
		go r.work()
	}
	return r, nil
}

func (r *Router) compile(cfg *Config, dests *destinations) error {
	deliveries := map[brokerKey]*eventingduckv1.DeliverySpec{}
	for _, b := range cfg.Brokers {
		k := brokerKey{b.Namespace, b.Name}
		r.brokers[k] = &broker{key: k}
		deliveries[k] = b.Spec.Delivery
		dests.brokers[k] = true
	}
	var errs []error
	for _, t := range cfg.Triggers {
		k := brokerKey{t.Namespace, t.Spec.Broker}
		if t.Spec.BrokerRef != nil {
			k.name = t.Spec.BrokerRef.Name
		}
		b, ok := r.brokers[k]
		if !ok {
			errs = append(errs, fmt.Errorf("trigger %s/%s: broker %s/%s: %w", t.Namespace, t.Name, k.namespace, k.name, ErrNoBroker))
			continue
		}
		tr := &trigger{namespace: t.Namespace, name: t.Name, broker: b}
		sub, err := dests.url(t.Spec.Subscriber, t.Namespace)
		if err != nil {
			errs = append(errs, fmt.Errorf("trigger %s/%s: subscriber: %w", t.Namespace, t.Name, err))
			continue
		}
		tr.subscriber = sub
		// Knative uses the Trigger's delivery if it has one, else the Broker's — as a whole.
		spec := t.Spec.Delivery
		if spec == nil {
			spec = deliveries[k]
		}
		if tr.retry, err = r.policy(spec); err != nil {
			errs = append(errs, fmt.Errorf("trigger %s/%s: delivery: %w", t.Namespace, t.Name, err))
			continue
		}
		if spec != nil && spec.DeadLetterSink != nil {
			if tr.deadLetter, err = dests.url(*spec.DeadLetterSink, t.Namespace); err != nil {
				errs = append(errs, fmt.Errorf("trigger %s/%s: dead-letter sink: %w", t.Namespace, t.Name, err))
				continue
			}
		}
		tr.structured = spec != nil && spec.Format != nil && *spec.Format == eventingduckv1.DeliveryFormatJson
		if tr.filter, err = triggerFilter(t); err != nil {
			errs = append(errs, fmt.Errorf("trigger %s/%s: filters: %w", t.Namespace, t.Name, err))
			continue
		}
		b.triggers = append(b.triggers, tr)
	}
	for _, p := range cfg.PingSources {
		ps, err := newPingSource(p, dests)
		if err != nil {
			errs = append(errs, fmt.Errorf("pingsource %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		r.pings = append(r.pings, ps)
	}
	return errors.Join(errs...)
}

// Ingest accepts ev into Broker namespace/name as the ingress does, and returns once its
// deliveries are queued. Errors: ErrNoBroker, ErrBusy, ErrClosed, or an invalid event.
func (r *Router) Ingest(namespace, name string, ev cloudevents.Event) error {
	return r.ingest(brokerKey{namespace, name}, ev, false)
}

// ingest implements Ingest; internal marks replies, which are accepted while draining so that
// Drain completes what is in flight.
func (r *Router) ingest(k brokerKey, ev cloudevents.Event, internal bool) error {
	b, ok := r.brokers[k]
	if !ok {
		return fmt.Errorf("broker %s/%s: %w", k.namespace, k.name, ErrNoBroker)
	}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("invalid event: %w", err)
	}
	ev = ev.Clone() // the caller's event shares its context
	ttl := nextTTL(ev)
	if ttl <= 0 {
		return fmt.Errorf("invalid event: %s reached 0 (a reply loop?)", ttlAttribute)
	}
	ev.SetExtension(ttlAttribute, ttl)
	ev.SetExtension(arrivalTimeAttribute, cloudevents.Timestamp{Time: time.Now()})

	ctx := logging.WithLogger(context.Background(), r.log)
	var matched []*trigger
	for _, t := range b.triggers {
		if t.filter.Filter(ctx, ev) != eventfilter.FailFilter {
			matched = append(matched, t)
		}
	}

	r.mu.Lock()
	switch {
	case r.closed || (r.draining && !internal):
		r.mu.Unlock()
		r.stats.rejected.Add(1)
		return ErrClosed
	case r.inflight+len(matched) > r.opts.queueSize:
		r.mu.Unlock()
		r.stats.rejected.Add(1)
		return ErrBusy
	}
	r.inflight += len(matched)
	r.mu.Unlock()

	r.stats.accepted.Add(1)
	for _, t := range matched {
		d := &delivery{trigger: t, event: ev.Clone(), ttl: ttl}
		// The subscriber does not see the TTL; it is reattached to replies.
		_ = d.event.Context.SetExtension(ttlAttribute, nil)
		r.queue <- d // never blocks: the queue holds at most inflight ≤ queueSize deliveries
	}
	return nil
}

func (r *Router) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Drain stops accepting events at the ingress (503) and waits until every accepted event has
// been delivered, dead-lettered or given up, replies and ping sends included, or ctx is done.
func (r *Router) Drain(ctx context.Context) error {
	r.mu.Lock()
	r.draining = true
	if r.inflight == 0 && r.pinging == 0 {
		r.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	r.idle = append(r.idle, ch)
	r.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		n := r.inflight
		r.mu.Unlock()
		return fmt.Errorf("drain router: %d deliveries still in flight: %w", n, ctx.Err())
	}
}

// Close stops the router: in-flight requests are cancelled and what is still queued or waiting
// to retry is lost (counted in Stats.Lost). Call Drain first to finish the work.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed, r.draining = true, true
	timers := r.timers
	r.timers = map[*delivery]*time.Timer{}
	r.mu.Unlock()

	r.cancel()
	for _, t := range timers {
		if t.Stop() {
			r.lose(nil)
		}
	}
	close(r.stop)
	r.wg.Wait()
	for {
		select {
		case d := <-r.queue:
			r.lose(d)
			continue
		default:
		}
		break
	}
	// Whatever a late timer still holds is gone too; wake any Drain.
	r.mu.Lock()
	r.inflight = 0
	r.wakeIdle()
	r.mu.Unlock()
	return nil
}

// Stats returns a snapshot of the counters.
func (r *Router) Stats() Stats {
	return Stats{
		Accepted:     r.stats.accepted.Load(),
		Rejected:     r.stats.rejected.Load(),
		Delivered:    r.stats.delivered.Load(),
		Retried:      r.stats.retried.Load(),
		Replies:      r.stats.replies.Load(),
		DeadLettered: r.stats.deadLettered.Load(),
		Lost:         r.stats.lost.Load(),
		Pings:        r.stats.pings.Load(),
	}
}

var (
	descs = map[string]*prometheus.Desc{}
	names = []struct{ name, help string }{
		{"accepted", "Events accepted by the in-process broker ingress, replies included."},
		{"rejected", "Events refused with 503 (queue full, draining or closed)."},
		{"delivered", "Deliveries acknowledged by a subscriber."},
		{"retried", "Delivery retries scheduled."},
		{"replies", "Reply events re-ingested into their broker."},
		{"dead_lettered", "Deliveries acknowledged by the dead-letter sink."},
		{"lost", "Deliveries given up without a working dead-letter sink."},
		{"pings", "Ping events acknowledged by their sink."},
	}
)

func init() {
	for _, n := range names {
		descs[n.name] = prometheus.NewDesc("omni_router_"+n.name+"_total", n.help, nil, nil)
	}
}

// Describe implements prometheus.Collector.
func (r *Router) Describe(ch chan<- *prometheus.Desc) {
	for _, n := range names {
		ch <- descs[n.name]
	}
}

// Collect implements prometheus.Collector.
func (r *Router) Collect(ch chan<- prometheus.Metric) {
	s := r.Stats()
	for name, v := range map[string]uint64{
		"accepted": s.Accepted, "rejected": s.Rejected, "delivered": s.Delivered, "retried": s.Retried,
		"replies": s.Replies, "dead_lettered": s.DeadLettered, "lost": s.Lost, "pings": s.Pings,
	} {
		ch <- prometheus.MustNewConstMetric(descs[name], prometheus.CounterValue, float64(v))
	}
}

var _ prometheus.Collector = (*Router)(nil)
