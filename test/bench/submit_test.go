package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/shared/ids"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
)

// rpmJob is the submission measured: the end-to-end tests' buildrpm job.
var rpmJob = map[string]any{
	"service": "bench", "task": "buildrpm", "arch": "x86_64", "domain": "bench",
	"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
}

// submitClients are the numbers of concurrent clients measured.
var submitClients = []int{1, 4}

const (
	// submitRound is how many jobs go through each path per benchmark iteration: enough for a
	// p99 even when the testing package stops after one iteration (it does once one takes 1s).
	submitRound = 100
	// submitWarmUp jobs go through each path before anything is measured.
	submitWarmUp = 5
	// submitChunk jobs per client go through one path before the other path has its turn.
	submitChunk = 5
)

func BenchmarkSubmit(b *testing.B) {
	m := allInOne(b)
	cl := m.Platform.Cluster("x86_64")
	if cl == nil {
		b.Fatal("no x86_64 cluster")
	}
	dyn, err := dynamic.NewForConfig(cl.RESTConfig()) // the same QPS/burst as shared/kube's clients
	if err != nil {
		b.Fatal(err)
	}
	body, err := json.Marshal(rpmJob)
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	post := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/v1/jobs", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth(m.User, m.Password)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("POST /v1/jobs: %d %s", resp.StatusCode, msg)
		}
		return nil
	}
	render := func(n int) ([][]*unstructured.Unstructured, error) {
		out := make([][]*unstructured.Unstructured, n)
		for i := range out {
			var err error
			if out[i], err = renderRPM(m, "x86_64", nil); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	create := func(ctx context.Context, objs []*unstructured.Unstructured) error {
		for _, o := range objs {
			gvr, ok := resources[o.GroupVersionKind()]
			if !ok {
				return fmt.Errorf("no resource for %s", o.GroupVersionKind())
			}
			if _, err := dyn.Resource(gvr).Namespace(o.GetNamespace()).Create(ctx, o, metav1.CreateOptions{FieldManager: names.ManagedBy}); err != nil {
				return fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err)
			}
		}
		return nil
	}

	// Warm up both paths: connections, the authenticator's cache, the API server's caches.
	ctx := context.Background()
	warm, err := render(submitWarmUp)
	if err != nil {
		b.Fatal(err)
	}
	for _, objs := range warm {
		if err := post(ctx); err != nil {
			b.Fatal(err)
		}
		if err := create(ctx, objs); err != nil {
			b.Fatal(err)
		}
	}

	type pair struct{ raw, api sample }
	res := map[int]pair{}
	for _, clients := range submitClients {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			settle(b, cl.Clientset())
			total := b.N * submitRound
			objs, err := render(total)
			if err != nil {
				b.Fatal(err)
			}
			// The two paths take turns in chunks, each going first every other time, so that the
			// load the cluster is under (the pods of the jobs just created, the adapters'
			// events) weighs on both alike.
			var p pair
			chunk := submitChunk * clients
			b.ResetTimer()
			for done := 0; done < total; done += chunk {
				n := min(chunk, total-done)
				raw := func() { p.raw.add(measure(b, clients, n, func(i int) error { return create(ctx, objs[done+i]) })) }
				api := func() { p.api.add(measure(b, clients, n, func(int) error { return post(ctx) })) }
				if done/chunk%2 == 0 {
					raw()
					api()
				} else {
					api()
					raw()
				}
			}
			b.StopTimer()
			res[clients] = p
			b.ReportMetric(ms(p.api.quantile(.5)), "p50-ms")
			b.ReportMetric(ms(p.api.quantile(.99)), "p99-ms")
			b.ReportMetric(p.api.perSecond(), "jobs/s")
			b.ReportMetric(ms(p.raw.quantile(.5)), "client-go-p50-ms")
			b.ReportMetric(ms(p.raw.quantile(.99)), "client-go-p99-ms")
			b.ReportMetric(p.raw.perSecond(), "client-go-jobs/s")
			b.ReportMetric(float64(p.api.quantile(.5))/float64(p.raw.quantile(.5)), "p50/client-go")
			b.ReportMetric(p.api.perSecond()/p.raw.perSecond(), "jobs/s/client-go")
		})
	}

	settle(b, cl.Clientset()) // the pods of the last run end before the next benchmark

	var rows [][]string
	for _, clients := range submitClients {
		p, ok := res[clients]
		if !ok {
			continue
		}
		row := func(path string, s sample, vs string) []string {
			return []string{fmt.Sprint(clients), path, fmt.Sprint(len(s.lat)),
				fmt.Sprintf("%.1f", ms(s.quantile(.5))), fmt.Sprintf("%.1f", ms(s.quantile(.99))),
				fmt.Sprintf("%.1f", s.perSecond()), vs}
		}
		rows = append(rows, row("client-go create (baseline)", p.raw, ""), row("all-in-one POST /v1/jobs", p.api,
			fmt.Sprintf("p50 %s, p99 %s, jobs/s %s",
				ratio(ms(p.api.quantile(.5)), ms(p.raw.quantile(.5))),
				ratio(ms(p.api.quantile(.99)), ms(p.raw.quantile(.99))),
				ratio(p.api.perSecond(), p.raw.perSecond()))))
	}
	table("Submit: buildrpm on x86_64, all-in-one POST /v1/jobs vs client-go create of the same ConfigMap+Job",
		[]string{"clients", "path", "jobs", "p50 ms", "p99 ms", "jobs/s", "vs baseline"}, rows)
}

// renderRPM renders rpmJob's objects for arch with labels, under a new job id, as submit
// would on the local clusters.
func renderRPM(m *allinone.Main, arch string, labels map[string]string) ([]*unstructured.Unstructured, error) {
	ttl := int32(3600)
	return m.Deps.Catalogue.Current().Render("buildrpm", manifest.Input{
		JobID: ids.New(time.Now()), Namespace: "default", Service: "bench", Task: "buildrpm",
		Domain: "bench", Arch: arch, Parameters: rpmJob["parameters"].(map[string]any),
		TTLSecondsAfterFinished: &ttl, Labels: labels,
	})
}

// resources maps the kinds buildrpm renders to their resources.
var resources = map[schema.GroupVersionKind]schema.GroupVersionResource{
	{Version: "v1", Kind: "ConfigMap"}:           {Version: "v1", Resource: "configmaps"},
	{Group: "batch", Version: "v1", Kind: "Job"}: {Group: "batch", Version: "v1", Resource: "jobs"},
}

// measure runs op for i in [0, n) on the given number of concurrent clients, timing each call.
func measure(b *testing.B, clients, n int, op func(i int) error) sample {
	b.Helper()
	lats := make([][]time.Duration, clients)
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	began := time.Now()
	for c := range clients {
		wg.Go(func() {
			for failed.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lats[c] = append(lats[c], time.Since(t))
			}
		})
	}
	wg.Wait()
	s := sample{elapsed: time.Since(began)}
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	for _, l := range lats {
		s.lat = append(s.lat, l...)
	}
	s.mustBePossible(b, "submit")
	return s
}

// settle waits until no pod of a job is pending or running on the cluster, so that a run is not
// measured while the previous run's pods still load the API server; after a deadline it goes on.
func settle(b *testing.B, cs kubernetes.Interface) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	busy := -1
	for {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.LabelJobID})
		if err == nil {
			busy = 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodPending || p.Status.Phase == corev1.PodRunning {
					busy++
				}
			}
			if busy == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			b.Logf("cluster not settled after 3m (%d pods pending or running, last error %v); measuring anyway", busy, err)
			return
		case <-tick.C:
		}
	}
}
