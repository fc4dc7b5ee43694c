// Package notify is the core of the notify function: for every job.created and job.changed
// event it POSTs the event, signed with HMAC-SHA256, to the job's own callback URL and to every
// configured subscription that selects the job, all at once; it answers 2xx only when every one
// of them took it, so that the Broker retries (with its backoff, then its dead-letter sink) what
// failed. There is no retry queue in the function. See docs/notify.md.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"knative.dev/pkg/logging"

	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// Name is the function's name (its Knative Service, the subscriber of Trigger notify).
const Name = "notify"

// Settings are the notify function's own settings. Each field names its variable and default.
type Settings struct {
	// Subscriptions is the subscriptions file (in the cluster: a key of the mounted ConfigMap
	// omni-notify-subscriptions), reloaded when it changes; a missing file means none.
	// Default /etc/omni/notify/subscriptions.yaml; the all-in-one: <data dir>/subscriptions.yaml.
	Subscriptions string `envconfig:"OMNI_NOTIFY_SUBSCRIPTIONS" default:"/etc/omni/notify/subscriptions.yaml"`
	// CallbackSecret signs the deliveries to jobs' callback URLs of services that have no secret
	// of their own in CallbackSecrets; empty (the default) sends those unsigned.
	CallbackSecret string `envconfig:"OMNI_NOTIFY_CALLBACK_SECRET"`
	// CallbackSecrets is a folder of one file per service (named as the service) holding the
	// secret that signs the deliveries to that service's callback URLs (in the cluster: the
	// mounted Secret omni-notify-callback-secrets); a service without a file falls back to
	// CallbackSecret. Read at each delivery, so a rotated Secret takes effect at once.
	// Default /etc/omni/notify-callback-secrets.
	CallbackSecrets string `envconfig:"OMNI_NOTIFY_CALLBACK_SECRETS" default:"/etc/omni/notify-callback-secrets"`
	// Timeout bounds one delivery: connect, request, response. Default 10s.
	Timeout time.Duration `envconfig:"OMNI_NOTIFY_TIMEOUT" default:"10s"`
	// RememberFor is how long a replica remembers a successful delivery so that a Broker retry
	// of the same event skips that receiver. Default 10m; 0 sends retries to every receiver.
	RememberFor time.Duration `envconfig:"OMNI_NOTIFY_REMEMBER_FOR" default:"10m"`
	// RememberMax bounds the remembered deliveries (least recently used go first). Default 10000.
	RememberMax int `envconfig:"OMNI_NOTIFY_REMEMBER_MAX" default:"10000"`
}

// Jobs reads jobs from the store: notify delivers the job as stored, never what an event says.
type Jobs interface {
	GetJob(ctx context.Context, id string) (*jobs.Job, error)
}

// Doer sends one HTTP request (an *http.Client).
type Doer interface {
	Do(req *http.Request) (*http.Response, error)
}

// Handler is the notify function.
type Handler struct {
	// Jobs is the store the jobs and their callback URLs are read from (as recorded at submit).
	Jobs Jobs
	// Guard checks jobs' callback URLs again before each delivery (Callbacks' dialer checks the
	// connected address); nil checks only their syntax.
	Guard *callback.Guard
	// Subscriptions returns the subscriptions in force; nil means none.
	Subscriptions func() *Subscriptions
	// CallbackSecret signs deliveries to callback URLs of services without their own secret
	// in CallbackSecrets; empty sends them unsigned.
	CallbackSecret []byte
	// CallbackSecrets, if set, is the folder of the services' own callback secrets (a file per
	// service).
	CallbackSecrets string
	// Now is the clock of the deliveries' timestamps (default time.Now).
	Now func() time.Time
	// Callbacks sends to jobs' callback URLs (which any submitter chooses: guarded against
	// denied networks); Webhooks sends to subscriptions (which the operator chose).
	Callbacks, Webhooks Doer
	// Timeout bounds one delivery. Default 10s.
	Timeout time.Duration
	// Memory, if not nil, remembers successful deliveries so a retry of the event skips them.
	Memory *Memory
	// Parallel bounds the deliveries of one event at once. Default 16.
	Parallel int
}

// receiver is one destination of one event.
type receiver struct {
	name   string // "callback" or the subscription's name
	url    *url.URL
	secret []byte // empty: unsigned
	client Doer
	// invalid, when set, is why this receiver can never be delivered to.
	invalid error
}

const callbackReceiver = "callback"

// outcome is the result of one delivery.
type outcome struct {
	receiver *receiver
	err      error
	// permanent: retrying cannot help (a callback URL that is invalid or leads to a denied network).
	permanent bool
	skipped   bool // delivered before (Memory)
}

// hint is what notify reads of an event's data: which state of which job it announces. The
// rest of the data (the job, its callback URL) is never trusted: anyone who can reach the
// Broker can forge it. The job is read from the store.
type hint struct {
	ID             string      `json:"id"`
	Revision       int64       `json:"revision"`
	PreviousStatus jobs.Status `json:"previousStatus"`
}

// Receive delivers the stored state of the job an event names (its subject) to every receiver
// of it: the job's callback URL as recorded at submit, and the matching subscriptions. It
// answers ACK when all of them took it (or had it already), 400 for an event that is not a job
// event or names no stored job (dead-lettered at once), 503 when the store holds an older
// revision than the event announces (the Broker retries until the store has caught up) or
// when any delivery failed in a way a retry may fix, and 400 when the only failures can never
// succeed.
func (h *Handler) Receive(ctx context.Context, e event.Event) protocol.Result {
	switch e.Type() {
	case events.TypeJobCreated, events.TypeJobChanged:
	default:
		return jobs.Invalid("type", "notify: unexpected event type %q", e.Type())
	}
	var data hint
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		return jobs.Invalid("data", "notify: data is not a job: %v", err)
	}
	id := e.Subject()
	switch {
	case id == "" && data.ID == "":
		return jobs.Invalid("subject", "notify: data is not a job: no id")
	case id == "":
		id = data.ID
	case data.ID != "" && data.ID != id:
		return jobs.Invalid("subject", "notify: subject %q is not the job id %q", id, data.ID)
	}
	// The id names what the event announces (type, job, revision), as events.NewJobEvent makes
	// it: receivers de-duplicate by it, so no event may announce one state under another's id.
	if want := events.JobEventID(e.Type(), id, data.Revision); e.ID() != want {
		return jobs.Invalid("id", "notify: event id %q is not %q (its type, job and revision)", e.ID(), want)
	}
	j, err := h.Jobs.GetJob(ctx, id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		return jobs.Invalid("subject", "notify: no job %s: nothing to deliver", id)
	case err != nil:
		return fmt.Errorf("notify: read job %s: %w", id, err)
	case j.Revision < data.Revision:
		return fmt.Errorf("%w: notify: job %s is stored at revision %d, the event announces %d", jobs.ErrUnavailable, id, j.Revision, data.Revision)
	}
	// The previous status is the event's only when it announces the stored revision.
	var previous jobs.Status
	if data.Revision == j.Revision && data.PreviousStatus.Valid() {
		previous = data.PreviousStatus
	}
	source := strings.TrimPrefix(e.Source(), events.Source(""))
	if !knownSources[source] {
		source = Name
	}
	// What is delivered: the stored job, under the event's id (receivers de-duplicate by it;
	// its revision is at most the data's).
	out, err := events.NewJobEvent(e.Type(), source, j, previous)
	if err != nil {
		return err
	}
	out.SetID(e.ID())

	var rs []*receiver
	if cb := j.Callback; cb != "" {
		r := &receiver{name: callbackReceiver, secret: h.callbackSecret(j.Service), client: h.Callbacks}
		if h.Guard != nil {
			r.url, r.invalid = h.Guard.Check(cb)
		} else if r.url, err = url.Parse(cb); err != nil || (r.url.Scheme != "http" && r.url.Scheme != "https") || r.url.Host == "" {
			r.invalid = errors.New("not an absolute http or https URL")
		}
		if r.invalid != nil {
			r.url, _ = url.Parse(cb)
			r.invalid = fmt.Errorf("callback URL: %w", r.invalid)
		}
		rs = append(rs, r)
	}
	if h.Subscriptions != nil {
		for _, sub := range h.Subscriptions().Matching(out.Type(), j) {
			rs = append(rs, &receiver{name: sub.Name, url: sub.url, secret: sub.secret, client: h.Webhooks})
		}
	}
	if len(rs) == 0 {
		return protocol.ResultACK
	}

	res := h.deliverAll(ctx, out, rs)
	var retry, never []string
	for _, o := range res {
		switch {
		case o.err == nil:
		case o.permanent:
			never = append(never, o.describe())
		default:
			retry = append(retry, o.describe())
		}
	}
	failed := append(retry, never...)
	if len(failed) == 0 {
		return protocol.ResultACK
	}
	msg := fmt.Sprintf("notify: event %s: %d of %d deliveries failed: %s", out.ID(), len(failed), len(rs), strings.Join(failed, "; "))
	logging.FromContext(ctx).Warnw("Delivery failed", "event", out.ID(), "type", out.Type(), "job", j.ID,
		"failed", failed, "receivers", len(rs), "retry", len(retry) > 0)
	if len(retry) > 0 {
		return fmt.Errorf("%w: %s", jobs.ErrUnavailable, msg)
	}
	return jobs.Invalid("", "%s", msg)
}

// callbackSecret is the secret of service's callback deliveries: its own file in
// CallbackSecrets, else CallbackSecret.
func (h *Handler) callbackSecret(service string) []byte {
	if h.CallbackSecrets != "" && service != "" && service == filepath.Base(service) && !strings.HasPrefix(service, ".") {
		if b, err := os.ReadFile(filepath.Join(h.CallbackSecrets, service)); err == nil {
			if s := bytes.TrimSpace(b); len(s) > 0 {
				return s
			}
		}
	}
	return h.CallbackSecret
}

// knownSources are the functions that emit job events; a delivery names its source only if it
// is one of them.
var knownSources = map[string]bool{"submit": true, "status-sync": true}

func (o outcome) describe() string {
	return fmt.Sprintf("%s (%s): %v", o.receiver.name, redact(o.receiver.url), o.err)
}

// redact shows a URL without credentials and query (callback URLs often carry tokens).
func redact(u *url.URL) string {
	if u == nil {
		return "no URL"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// deliverAll delivers e to every receiver at once (at most Parallel at a time).
func (h *Handler) deliverAll(ctx context.Context, e event.Event, rs []*receiver) []outcome {
	out := make([]outcome, len(rs))
	// What receivers see: the event without the Broker's own extensions.
	ev := e.Clone()
	for name := range ev.Extensions() {
		if strings.HasPrefix(name, "knative") {
			_ = ev.Context.SetExtension(name, nil)
		}
	}
	parallel := h.Parallel
	if parallel <= 0 {
		parallel = 16
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, r := range rs {
		out[i].receiver = r
		if r.invalid != nil {
			out[i].err, out[i].permanent = r.invalid, true
			deliveries.WithLabelValues(r.name, "rejected").Inc()
			continue
		}
		// Remembered only after the stored job reached the receiver under this id: an event id
		// names a revision the store has reached (else Receive refused it), and what was
		// delivered is that revision or a later one, so a forged event with a predictable id
		// can only cause a real delivery, never make one be skipped.
		key := e.ID() + "\x00" + r.name + "\x00" + r.url.String()
		if h.Memory.Has(key) {
			out[i].skipped = true
			deliveries.WithLabelValues(r.name, "skipped").Inc()
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			began := time.Now()
			err := h.deliver(ctx, ev, r)
			deliverySeconds.WithLabelValues(kind(r.name)).Observe(time.Since(began).Seconds())
			switch {
			case err == nil:
				h.Memory.Add(key)
				deliveries.WithLabelValues(r.name, "delivered").Inc()
			case errors.Is(err, callback.ErrForbidden):
				out[i].err, out[i].permanent = err, true
				deliveries.WithLabelValues(r.name, "rejected").Inc()
			default:
				out[i].err = err
				deliveries.WithLabelValues(r.name, "failed").Inc()
			}
		})
	}
	wg.Wait()
	return out
}

func kind(name string) string {
	if name == callbackReceiver {
		return "callback"
	}
	return "subscription"
}

// deliver POSTs e to r as a binary-mode CloudEvent: the ce-* headers carry the attributes and
// the body is the event's data exactly, which the signature covers.
func (h *Handler) deliver(ctx context.Context, e event.Event, r *receiver) error {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url.String(), nil)
	if err != nil {
		return err
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(&e), req); err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	body := e.Data()
	req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.Header.Set(HeaderEventID, e.ID())
	req.Header.Set(HeaderEventType, e.Type())
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	ts := now().Unix()
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderReceiver, r.name)
	req.Header.Set("User-Agent", "omni-notify/1")
	if len(r.secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(r.secret, e.ID(), ts, body))
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is shown redacted by the caller
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if s := strings.Join(strings.Fields(string(snippet)), " "); s != "" {
			return fmt.Errorf("%s: %s", resp.Status, s)
		}
		return errors.New(resp.Status)
	}
	return nil
}

// Event is Receive in the shape of runtime.EventFunc (notify replies no event).
func (h *Handler) Event(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	return nil, h.Receive(ctx, e)
}

// Clients returns the HTTP clients of the deliveries: to callbacks (direct, never through a
// proxy, refusing what guard refuses at connect time), and to subscriptions (the environment's
// proxy settings apply). Neither follows redirects: a 3xx is a failed delivery.
func Clients(guard *callback.Guard) (callbacks, webhooks *http.Client) {
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 16
	cb := base.Clone()
	cb.Proxy = nil
	if guard == nil {
		guard = &callback.Guard{}
	}
	cb.DialContext = guard.Dialer().DialContext
	return &http.Client{Transport: cb, CheckRedirect: noRedirect}, &http.Client{Transport: base, CheckRedirect: noRedirect}
}

var (
	metricsOnce     sync.Once
	deliveries      *prometheus.CounterVec
	deliverySeconds *prometheus.HistogramVec
)

func registerMetrics() {
	metricsOnce.Do(func() {
		deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omni_notify_deliveries_total",
			Help: "Webhook deliveries by receiver (callback or subscription name) and result (delivered, failed, rejected, skipped).",
		}, []string{"receiver", "result"})
		deliverySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omni_notify_delivery_seconds", Help: "Webhook delivery latency by kind of receiver.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"kind"})
		prometheus.MustRegister(deliveries, deliverySeconds)
	})
}

func init() { registerMetrics() }

// Deps are what notify uses: the job store, and the callback guard (shared with submit).
type Deps struct {
	Jobs  Jobs
	Guard *callback.Guard
}

// New builds the notify handler from s and d: its subscriptions file is watched until ctx is
// done.
func New(ctx context.Context, s Settings, d Deps) (*Handler, error) {
	src, err := NewSource(s.Subscriptions)
	if err != nil {
		return nil, err
	}
	go func() { _ = src.Watch(ctx) }()
	callbacks, webhooks := Clients(d.Guard)
	if s.CallbackSecret == "" {
		logging.FromContext(ctx).Info("OMNI_NOTIFY_CALLBACK_SECRET is not set: deliveries to callback URLs are not signed")
	}
	return &Handler{
		Jobs:            d.Jobs,
		Guard:           d.Guard,
		Subscriptions:   src.Current,
		CallbackSecret:  []byte(s.CallbackSecret),
		CallbackSecrets: s.CallbackSecrets,
		Callbacks:       callbacks,
		Webhooks:        webhooks,
		Timeout:         s.Timeout,
		Memory:          NewMemory(s.RememberFor, s.RememberMax),
	}, nil
}

// Function serves h: POST / takes job events from the Broker; checks are its readiness checks.
func (h *Handler) Function(checks ...runtime.Check) *runtime.Function {
	ce := runtime.CloudEvents(h.Event)
	return &runtime.Function{
		Name:   Name,
		Routes: func(mux *http.ServeMux) { mux.Handle("POST /{$}", ce) },
		Checks: checks,
	}
}
