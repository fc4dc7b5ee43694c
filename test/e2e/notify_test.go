package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The notify tests' service, secrets and subscription receiver. The subscription (in
// <data dir>/subscriptions.yaml, where the all-in-one's notify looks by default) selects every
// job of notifyService, so it sees each job of these tests besides the job's own callback.
const (
	notifyService      = "notify-e2e"
	callbackSecret     = "e2e-callback-secret"
	subscriptionSecret = "e2e-subscription-secret"
	subscriptionName   = "e2e"
)

var (
	subscriber     *webhook
	notifySetupErr error
)

// writeSubscriptions prepares notify before the all-in-one starts (TestMain calls it): it starts
// the subscription's receiver, writes the subscriptions file with the secret in a file of its
// own (secretRef, as a mounted Secret would be), and sets OMNI_NOTIFY_CALLBACK_SECRET so that
// callbacks are signed too. A failure fails the notify tests only.
func writeSubscriptions(dir string) {
	subscriber = newWebhook(subscriptionSecret, nil)
	secret := filepath.Join(dir, "notify-secrets", subscriptionName)
	yaml := fmt.Sprintf(`subscriptions:
  - name: %s
    url: %s/omni-events
    secretRef: notify-secrets/%s
    match:
      services: [%s]
`, subscriptionName, subscriber.URL, subscriptionName, notifyService)
	notifySetupErr = firstErr(
		os.MkdirAll(filepath.Dir(secret), 0o700),
		os.WriteFile(secret, []byte(subscriptionSecret+"\n"), 0o600),
		os.WriteFile(filepath.Join(dir, "subscriptions.yaml"), []byte(yaml), 0o600),
		os.Setenv("OMNI_NOTIFY_CALLBACK_SECRET", callbackSecret),
	)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// delivery is one request a webhook receiver got.
type delivery struct {
	id, typ, receiver string
	// answered is the status code the receiver answered with.
	answered    int
	signatureOK bool
	job         events.JobData
	at          time.Time
}

// webhook is a receiver of notify's deliveries, as a user would write one: it checks the
// signature against the exact body and answers with what answer says for the n-th request
// (1-based) of an event id (nil: 200).
type webhook struct {
	*httptest.Server
	secret  []byte
	answer  func(id string, n int) int
	mu      sync.Mutex
	got     []delivery
	changed chan struct{} // receives a value after each request (capacity 1)
}

func newWebhook(secret string, answer func(id string, n int) int) *webhook {
	w := &webhook{secret: []byte(secret), answer: answer, changed: make(chan struct{}, 1)}
	w.Server = httptest.NewServer(http.HandlerFunc(w.serve))
	return w
}

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	d := delivery{id: r.Header.Get("X-Omni-Event-Id"), typ: r.Header.Get("Ce-Type"), receiver: r.Header.Get("X-Omni-Receiver"), at: time.Now()}
	if ceID := r.Header.Get("Ce-Id"); ceID != d.id {
		d.id = "mismatch: ce-id " + ceID + ", X-Omni-Event-Id " + d.id
	}
	// The signature covers the event id, the delivery's timestamp and the body (docs/notify.md);
	// a timestamp outside 5 minutes of now is a replay.
	ts := r.Header.Get("X-Omni-Timestamp")
	mac := hmac.New(sha256.New, w.secret)
	mac.Write([]byte(r.Header.Get("X-Omni-Event-Id") + "." + ts + "."))
	mac.Write(body)
	sig, _ := strings.CutPrefix(r.Header.Get("X-Omni-Signature"), "sha256=")
	got, _ := hex.DecodeString(sig)
	sec, err := strconv.ParseInt(ts, 10, 64)
	d.signatureOK = hmac.Equal(got, mac.Sum(nil)) && err == nil && time.Since(time.Unix(sec, 0)).Abs() < 5*time.Minute
	_ = json.Unmarshal(body, &d.job)

	w.mu.Lock()
	n := 1
	for _, prev := range w.got {
		if prev.id == d.id {
			n++
		}
	}
	d.answered = http.StatusOK
	if w.answer != nil {
		d.answered = w.answer(d.id, n)
	}
	w.got = append(w.got, d)
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	rw.WriteHeader(d.answered)
}

// of returns the deliveries of job id's events, in arrival order.
func (w *webhook) of(id string) []delivery {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []delivery
	for _, d := range w.got {
		if d.job.Job != nil && d.job.ID == id {
			out = append(out, d)
		}
	}
	return out
}

// wait waits until done holds for the deliveries of job id, and returns them.
func (w *webhook) wait(t *testing.T, id, what string, done func([]delivery) bool) []delivery {
	t.Helper()
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for {
		if got := w.of(id); done(got) {
			return got
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			t.Fatalf("webhook: %s: not within the deadline; got %d deliveries: %+v", what, len(w.of(id)), w.of(id))
		}
	}
}

// accepted keeps the deliveries answered 2xx, one per event id (the first), sorted by revision:
// what a receiver that de-duplicates by id keeps.
func accepted(ds []delivery) []delivery {
	seen := map[string]bool{}
	var out []delivery
	for _, d := range ds {
		if d.answered/100 == 2 && !seen[d.id] {
			seen[d.id] = true
			out = append(out, d)
		}
	}
	// By revision of the data; at one revision (notify delivers the stored job, which may have
	// moved on since the event), job.created first.
	slices.SortFunc(out, func(a, b delivery) int {
		if a.job.Revision != b.job.Revision {
			return int(a.job.Revision - b.job.Revision)
		}
		return strings.Compare(b.typ, a.typ) // "…job.created" after "…job.changed" in reverse
	})
	return out
}

// hasEnd: the receiver accepted the event of the job's settled end. (Not "the job's last
// revision": a stored change that only moves a resourceVersion watermark emits no event.)
func hasEnd(ds []delivery) bool {
	return slices.ContainsFunc(accepted(ds), func(d delivery) bool { return settled(d.job.Job) })
}

// hasAll: the receiver accepted every event of ids.
func hasAll(ids []string) func([]delivery) bool {
	return func(ds []delivery) bool {
		got := map[string]bool{}
		for _, d := range accepted(ds) {
			got[d.id] = true
		}
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	}
}

func idsOf(ds []delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.id)
	}
	return out
}

func notifyJob(t *testing.T, callback string, labels map[string]string) *jobs.Job {
	t.Helper()
	if notifySetupErr != nil {
		t.Fatalf("notify setup: %v", notifySetupErr)
	}
	req := rpmJob(notifyService, "x86_64", labels)
	req["callback"] = callback
	return root.submit(t, req)
}

// checkDeliveries checks what a receiver accepted of job j (settled, final revision rev): every
// event is j's, with the id derived from its type and revision, a valid signature, and the
// statuses in revision order go pending → running → succeeded.
func checkDeliveries(t *testing.T, who string, j *jobs.Job, got []delivery, receiver string) {
	t.Helper()
	var statuses []jobs.Status
	ids := map[string]int64{}
	for i, d := range got {
		// notify delivers the job as stored when the event arrives, under the event's id: its
		// revision is the id's or a later one.
		short := strings.TrimPrefix(d.typ, "org.openeuler.omni.job.")
		var rev int64
		if _, err := fmt.Sscanf(strings.TrimPrefix(d.id, j.ID+"."+short+"."), "%d", &rev); err != nil || !strings.HasPrefix(d.id, j.ID+"."+short+".") || rev > d.job.Revision {
			t.Errorf("%s: event id %q: want %s.%s.<revision ≤ %d> (type and revision of what it announced)", who, d.id, j.ID, short, d.job.Revision)
		}
		if other, dup := ids[d.id]; dup {
			t.Errorf("%s: id %s twice (revisions %d and %d)", who, d.id, other, d.job.Revision)
		}
		ids[d.id] = d.job.Revision
		if !d.signatureOK {
			t.Errorf("%s: event %s: signature does not verify", who, d.id)
		}
		if d.receiver != receiver {
			t.Errorf("%s: X-Omni-Receiver %q, want %q", who, d.receiver, receiver)
		}
		if i == 0 && d.typ != events.TypeJobCreated {
			t.Errorf("%s: first event (lowest revision) is %s, want job.created", who, d.typ)
		}
		if i > 0 && d.typ != events.TypeJobChanged {
			t.Errorf("%s: event %s is %s, want job.changed", who, d.id, d.typ)
		}
		if len(statuses) == 0 || statuses[len(statuses)-1] != d.job.Status {
			statuses = append(statuses, d.job.Status)
		}
	}
	var seq []string
	for _, d := range got {
		seq = append(seq, fmt.Sprintf("r%d:%s", d.job.Revision, d.job.Status))
	}
	t.Logf("%s accepted %d events: %s", who, len(got), strings.Join(seq, " "))
	// A delivery carries the job as stored when notify handles its event (docs/notify.md), so a
	// job that started before notify read it shows running already in its job.created.
	want := []jobs.Status{jobs.StatusPending, jobs.StatusRunning, jobs.StatusSucceeded}
	if !slices.Equal(statuses, want) && !slices.Equal(statuses, want[1:]) {
		t.Errorf("%s: statuses by revision %v, want %v (pending may be passed over)", who, statuses, want)
	}
}

// A job's callback gets every transition of the job, signed, each event once by id, and so does
// the subscription that selects the job's service.
func TestNotifyEveryTransition(t *testing.T) {
	t.Parallel()
	cb := newWebhook(callbackSecret, nil)
	t.Cleanup(cb.Close)
	// The build step is held until the callback has seen the job running, so running is a
	// transition of its own (and not folded into the end by a fast pod).
	j := notifyJob(t, cb.URL+"/hooks/omni?token=t0k3n", map[string]string{platform.AnnotationHoldStep: "build-rpm"})
	cb.wait(t, j.ID, "running", func(ds []delivery) bool {
		return slices.ContainsFunc(accepted(ds), func(d delivery) bool { return d.job.Status == jobs.StatusRunning })
	})
	releaseHold(t, "x86_64", j.ID)
	done := root.wait(t, j.ID, "settled", settled)
	if done.Status != jobs.StatusSucceeded {
		t.Fatalf("job %s, want succeeded", done.Status)
	}
	got := accepted(cb.wait(t, j.ID, "the end", hasEnd))
	checkDeliveries(t, "callback", done, got, "callback")
	end := got[slices.IndexFunc(got, func(d delivery) bool { return d.job.Status.Terminal() })]
	if end.job.PreviousStatus != jobs.StatusRunning {
		t.Errorf("first terminal event: previousStatus %q, want running", end.job.PreviousStatus)
	}
	// The subscription gets the same events (the job's service is the one it selects).
	sub := accepted(subscriber.wait(t, j.ID, "the callback's events", hasAll(idsOf(got))))
	checkDeliveries(t, "subscription", done, sub, subscriptionName)
}

// releaseHold lets job id's held step end, by removing the hold label from its pod.
func releaseHold(t *testing.T, cluster, id string) {
	t.Helper()
	cs := omni.Platform.Cluster(cluster).Clientset()
	pods, err := cs.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: jobIDLabel + "=" + id})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of %s: %v (%d)", id, err, len(pods.Items))
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	if _, err := cs.CoreV1().Pods("default").Patch(context.Background(), pods.Items[0].Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A callback that fails twice for each event gets every event through the Broker's retries;
// the subscription, which took each event the first time, is not sent it again.
func TestNotifyRetriedThroughBroker(t *testing.T) {
	t.Parallel()
	cb := newWebhook(callbackSecret, func(_ string, n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	t.Cleanup(cb.Close)
	j := notifyJob(t, cb.URL+"/flaky", nil)
	root.wait(t, j.ID, "settled", settled)
	all := cb.wait(t, j.ID, "the end", hasEnd)
	for _, d := range accepted(all) {
		var answers []int
		for _, a := range all {
			if a.id == d.id {
				answers = append(answers, a.answered)
			}
		}
		if want := []int{503, 503, 200}; len(answers) < 3 || !slices.Equal(answers[:3], want) {
			t.Errorf("event %s: callback answered %v, want %v", d.id, answers, want)
		}
	}
	t.Logf("callback: %d requests for %d events", len(all), len(accepted(all)))
	sub := subscriber.wait(t, j.ID, "the callback's events", hasAll(idsOf(accepted(all))))
	counts := map[string]int{}
	for _, d := range sub {
		counts[d.id]++
	}
	for _, id := range idsOf(accepted(all)) {
		if n := counts[id]; n != 1 {
			t.Errorf("subscription got event %s %d times, want once (notify remembers it took it)", id, n)
		}
	}
	if dl := deadLettersOf(j.ID); len(dl) > 0 {
		t.Errorf("%d events of the job were dead-lettered", len(dl))
	}
}

// A callback that always fails gets each event 1 + the Trigger's retries times, then the event
// is in the dead-letter sink with Knative's error extensions naming notify and the failure.
func TestNotifyDeadLetter(t *testing.T) {
	t.Parallel()
	cfg, err := router.Load(config.FS)
	if err != nil {
		t.Fatal(err)
	}
	retries := -1
	for _, tr := range cfg.Triggers {
		if tr.Name == "notify" && tr.Spec.Delivery != nil && tr.Spec.Delivery.Retry != nil {
			retries = int(*tr.Spec.Delivery.Retry)
		}
	}
	if retries < 0 {
		t.Fatal("config/: no Trigger notify with delivery.retry")
	}
	cb := newWebhook(callbackSecret, func(string, int) int { return http.StatusInternalServerError })
	t.Cleanup(cb.Close)
	j := notifyJob(t, cb.URL+"/down?token=secret-token", nil)
	root.wait(t, j.ID, "settled", settled)

	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var letters []event.Event
	for range tick.C {
		// Done when the event of the job's end and every event the callback saw are dead letters.
		letters = deadLettersOf(j.ID)
		missing := map[string]bool{}
		for _, d := range cb.of(j.ID) {
			missing[d.id] = true
		}
		end := false
		for _, e := range letters {
			delete(missing, e.ID())
			var data events.JobData
			end = end || (json.Unmarshal(e.Data(), &data) == nil && data.Job != nil && settled(data.Job))
		}
		if end && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not dead-lettered within the deadline: the end seen %v, events missing %v (%d letters of the job)", end, missing, len(letters))
		}
	}
	attempts := map[string]int{}
	for _, d := range cb.of(j.ID) {
		attempts[d.id]++
	}
	t.Logf("%d events dead-lettered; attempts at the callback per event: %v", len(letters), attempts)
	for _, e := range letters {
		ext := e.Extensions()
		data, _ := ext["knativeerrordata"].(string)
		msg, _ := base64.StdEncoding.DecodeString(data)
		if ext["knativeerrorcode"] != "503" || ext["knativeerrordest"] != "http://notify.omni.svc.cluster.local/" {
			t.Errorf("dead letter %s: knativeerrorcode %v knativeerrordest %v, want 503 and notify", e.ID(), ext["knativeerrorcode"], ext["knativeerrordest"])
		}
		if want := "callback (" + cb.URL + "/down): 500 Internal Server Error"; !strings.Contains(string(msg), want) || strings.Contains(string(msg), "secret-token") {
			t.Errorf("dead letter %s: knativeerrordata %q, want it to contain %q and not the URL's query", e.ID(), msg, want)
		}
		if e.Subject() != j.ID || (e.Type() != events.TypeJobChanged && e.Type() != events.TypeJobCreated) {
			t.Errorf("dead letter %s: subject %s type %s", e.ID(), e.Subject(), e.Type())
		}
		if n := attempts[e.ID()]; n != 1+retries {
			t.Errorf("event %s: the callback got %d attempts, want %d (1 + the Trigger's %d retries)", e.ID(), n, 1+retries, retries)
		}
	}
	// The subscription took each event the first time and was not sent it again.
	subCount := map[string]int{}
	for _, d := range subscriber.of(j.ID) {
		subCount[d.id]++
	}
	for _, e := range letters {
		if n := subCount[e.ID()]; n != 1 {
			t.Errorf("subscription got event %s %d times, want once although the event was retried", e.ID(), n)
		}
	}
}

// deadLettersOf returns the dead-lettered events about job id.
func deadLettersOf(id string) []event.Event {
	var out []event.Event
	for _, e := range omni.DeadLetters() {
		if e.Subject() == id {
			out = append(out, e)
		}
	}
	return out
}
