package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// followRound is how many lines one iteration of BenchmarkFollow measures, one at a time.
const followRound = 50

// BenchmarkFollow measures follow latency: a line appended to the container log that kwok
// serves, to the line at a client of GET /v1/jobs/{id}/logs?follow=true (the query function
// reading the cluster's follow stream and passing it on as Server-Sent Events). The baseline is
// a raw client-go follow of the same container's log (pods/log?follow=true on the API server),
// connected at the same time and given the same lines: what the cluster itself takes to serve a
// line. Lines are written one at a time, each once both clients have the one before, so no
// queueing is measured. The job runs on aarch64 (BenchmarkSubmit loads x86_64) with its
// build-rpm step held while it is measured.
func BenchmarkFollow(b *testing.B) {
	m := allInOne(b)
	const cluster, step = "aarch64", "build-rpm"
	cl := m.Platform.Cluster(cluster)
	if cl == nil {
		b.Fatal("no aarch64 cluster")
	}
	orig, err := os.ReadFile(cl.LogsFile)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = os.WriteFile(cl.LogsFile, orig, 0o644) }()
	if err := os.WriteFile(cl.LogsFile, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	appendLine := func(text string) error {
		fd, err := os.OpenFile(cl.LogsFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer fd.Close()
		_, err = fmt.Fprintf(fd, "%s stdout F %s\n", time.Now().UTC().Format(time.RFC3339Nano), text)
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := followJob(ctx, m, cluster, step)
	if err != nil {
		b.Fatal(err)
	}
	defer releaseFollowJob(cl, id)
	pod, err := runningStep(ctx, cl, id, step)
	if err != nil {
		b.Fatal(err)
	}

	// A follow request is answered once the log holds a line (kwok, like a kubelet, sends the
	// response headers with the first line): give it one before the clients connect.
	if err := appendLine("bench follow start"); err != nil {
		b.Fatal(err)
	}
	api, err := followAPI(ctx, m, id, step)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := followRaw(ctx, cl, pod, step)
	if err != nil {
		b.Fatal(err)
	}
	// await waits until c has delivered the line with text, and returns when it arrived.
	await := func(c <-chan arrival, text string) (time.Time, error) {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case a, ok := <-c:
				if !ok {
					return time.Time{}, fmt.Errorf("stream ended before %q", text)
				}
				if a.text == text {
					return a.at, nil
				}
			case <-timeout:
				return time.Time{}, fmt.Errorf("line %q not received within 30s", text)
			}
		}
	}
	line := 0
	send := func() (apiLat, rawLat time.Duration, err error) {
		line++
		text := fmt.Sprintf("bench follow line %d", line)
		began := time.Now()
		if err := appendLine(text); err != nil {
			return 0, 0, err
		}
		atAPI, err := await(api, text)
		if err != nil {
			return 0, 0, fmt.Errorf("follow API: %w", err)
		}
		atRaw, err := await(raw, text)
		if err != nil {
			return 0, 0, fmt.Errorf("raw follow: %w", err)
		}
		return atAPI.Sub(began), atRaw.Sub(began), nil
	}
	for range 10 { // warm up: both streams live, connections and buffers in use
		if _, _, err := send(); err != nil {
			b.Fatal(err)
		}
	}

	// One sub-benchmark, so that the set-up above runs once and the table is printed once, for
	// the last (largest) run.
	var apiS, rawS, overS sample
	b.Run("lines", func(b *testing.B) {
		apiS, rawS, overS = sample{}, sample{}, sample{}
		began := time.Now()
		for range b.N {
			for range followRound {
				a, r, err := send()
				if err != nil {
					b.Fatal(err)
				}
				apiS.lat = append(apiS.lat, a)
				rawS.lat = append(rawS.lat, r)
				overS.lat = append(overS.lat, a-r)
			}
		}
		b.StopTimer()
		apiS.mustBePossible(b, "line → client through the API")
		rawS.mustBePossible(b, "line → raw client-go follow")
		apiS.elapsed = time.Since(began)
		rawS.elapsed = apiS.elapsed
		b.ReportMetric(ms(apiS.quantile(.5)), "p50-ms")
		b.ReportMetric(ms(apiS.quantile(.99)), "p99-ms")
		b.ReportMetric(ms(rawS.quantile(.5)), "raw-p50-ms")
		b.ReportMetric(ms(rawS.quantile(.99)), "raw-p99-ms")
		b.ReportMetric(float64(apiS.quantile(.5))/float64(rawS.quantile(.5)), "p50/raw")
		b.ReportMetric(float64(apiS.quantile(.99))/float64(rawS.quantile(.99)), "p99/raw")
	})

	row := func(path string, s sample, vs string) []string {
		return []string{path, fmt.Sprint(len(s.lat)), fmt.Sprintf("%.2f", ms(s.quantile(.5))), fmt.Sprintf("%.2f", ms(s.quantile(.99))), vs}
	}
	table("Follow latency: a line appended to the log kwok serves → the line at the client (aarch64 cluster, one line at a time)",
		[]string{"path", "lines", "p50 ms", "p99 ms", "vs baseline"}, [][]string{
			row("client-go pods/log follow (baseline)", rawS, ""),
			row("GET /v1/jobs/{id}/logs?follow=true (SSE)", apiS, fmt.Sprintf("p50 %s, p99 %s",
				ratio(ms(apiS.quantile(.5)), ms(rawS.quantile(.5))), ratio(ms(apiS.quantile(.99)), ms(rawS.quantile(.99))))),
			row("  added after the cluster served it (API − baseline, per line)", overS, ""),
		})
}

// arrival is a line received by a follow client, and when.
type arrival struct {
	text string
	at   time.Time
}

// followJob submits a buildrpm job on cluster whose step is held, and returns its id.
func followJob(ctx context.Context, m *allinone.Main, cluster, step string) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"service": "bench", "task": "buildrpm", "arch": cluster, "domain": "bench-follow",
		"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
		"labels":     map[string]string{platform.AnnotationHoldStep: step},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/v1/jobs", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(m.User, m.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var j struct{ ID string }
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusCreated || json.Unmarshal(b, &j) != nil {
		return "", fmt.Errorf("submit: %d %s", resp.StatusCode, b)
	}
	return j.ID, nil
}

// runningStep waits until step runs in job id's pod and returns the pod's name.
func runningStep(ctx context.Context, cl *platform.Cluster, id, step string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pods, err := cl.Clientset().CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.LabelJobID + "=" + id})
		if err == nil && len(pods.Items) == 1 {
			p := pods.Items[0]
			for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
				if cs.Name == step && cs.State.Running != nil {
					return p.Name, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("step %s of job %s not running within 2m (last error %v)", step, id, err)
		case <-tick.C:
		}
	}
}

// releaseFollowJob lets the held step end, so that the job finishes.
func releaseFollowJob(cl *platform.Cluster, id string) {
	ctx := context.Background()
	pods, err := cl.Clientset().CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: names.LabelJobID + "=" + id})
	if err != nil {
		return
	}
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, platform.AnnotationHoldStep)
	for _, p := range pods.Items {
		_, _ = cl.Clientset().CoreV1().Pods("default").Patch(ctx, p.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	}
}

// followAPI follows the step through the all-in-one and delivers each line as it arrives.
func followAPI(ctx context.Context, m *allinone.Main, id, step string) (<-chan arrival, error) {
	q := url.Values{"step": {step}, "follow": {"true"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/v1/jobs/"+id+"/logs?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(m.User, m.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("follow: %d %s", resp.StatusCode, b)
	}
	out := make(chan arrival, 1024)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			at := time.Now()
			var ev struct {
				Lines []struct{ Text string } `json:"lines"`
			}
			if json.Unmarshal([]byte(data), &ev) != nil {
				continue
			}
			for _, l := range ev.Lines {
				out <- arrival{l.Text, at}
			}
		}
	}()
	return out, nil
}

// followRaw follows the container's log straight from the API server (the baseline).
func followRaw(ctx context.Context, cl *platform.Cluster, pod, step string) (<-chan arrival, error) {
	rc, err := cl.Clientset().CoreV1().Pods("default").GetLogs(pod, &corev1.PodLogOptions{Container: step, Follow: true, Timestamps: true}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("raw follow: %w", err)
	}
	out := make(chan arrival, 1024)
	go func() {
		defer close(out)
		defer rc.Close()
		sc := bufio.NewScanner(rc)
		sc.Buffer(nil, 8<<20)
		for sc.Scan() {
			at := time.Now()
			_, text, _ := strings.Cut(sc.Text(), " ")
			out <- arrival{text, at}
		}
	}()
	return out, nil
}
