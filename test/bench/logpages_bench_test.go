package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// logPagesLines is the length of the running step's log that BenchmarkLogPages pages through;
// it is stamped logPagesRate lines a second (a chatty build).
const (
	logPagesLines = 100_000
	logPagesRate  = 1000
)

// BenchmarkLogPages pages through the log of a running step (100,000 lines that kwok serves as
// the log of a held step) with GET /v1/jobs/{id}/logs, 1000 lines a page, following each
// page's cursor, and counts the lines the query function reads from the cluster per page. The
// baseline is the same handler on a cluster that ignores sinceTime, so that every page reads
// the log from line 1 (as pages did before they resumed by the cursor's time): the quadratic
// figure the cursor removes, measured in the same run on the same log.
func BenchmarkLogPages(b *testing.B) {
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
	var log bytes.Buffer
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	for i := range logPagesLines {
		at := start.Add(time.Duration(i) * time.Second / logPagesRate)
		fmt.Fprintf(&log, "%s stdout F bench page line %d\n", at.Format(time.RFC3339Nano), i+1)
	}
	if err := os.WriteFile(cl.LogsFile, log.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id, err := followJob(ctx, m, cluster, step)
	if err != nil {
		b.Fatal(err)
	}
	defer releaseFollowJob(cl, id)
	if _, err := runningStep(ctx, cl, id, step); err != nil {
		b.Fatal(err)
	}
	cls, err := kube.New([]kube.ArchConfig{{Arch: cluster, Instances: []kube.Instance{{Name: cluster, Kubeconfig: cl.Kubeconfig}}}})
	if err != nil {
		b.Fatal(err)
	}
	j := &jobs.Job{ID: id, Service: "bench", Cluster: cluster, Namespace: "default", Status: jobs.StatusRunning,
		Steps: []jobs.Step{{Name: step, Status: jobs.StepRunning}}}

	type approach struct {
		name      string
		live      *countingLive
		srv       *httptest.Server
		pages     int
		read      int64
		maxPerPg  int64
		elapsed   time.Duration
		lastPages int
	}
	approaches := []*approach{
		{name: "query (resumes by the cursor's time)", live: &countingLive{LiveLogs: query.KubeLogs{Clusters: cls}}},
		{name: "baseline: every page from line 1", live: &countingLive{LiveLogs: query.KubeLogs{Clusters: cls}, ignoreSince: true}},
	}
	for _, a := range approaches {
		h := &query.LogHandler{Jobs: benchJobs{j}, Store: emptyLogStore{}, Live: a.live, Tokens: query.NewTokens([]byte("bench log pages key 0123456789ab"))}
		mux := http.NewServeMux()
		h.Routes(mux, func(next http.Handler) http.Handler {
			admin := &auth.Principal{User: "bench", Role: auth.RoleAdmin, Services: []string{auth.AllServices}}
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), admin)))
			})
		})
		a.srv = httptest.NewServer(mux)
		defer a.srv.Close()
	}

	b.ResetTimer()
	for range b.N {
		for _, a := range approaches { // one whole pass each, in turn
			before := a.live.lines.Load()
			began := time.Now()
			pages, maxPer, err := pageThrough(ctx, a.srv.URL, id, step, a.live)
			if err != nil {
				b.Fatalf("%s: %v", a.name, err)
			}
			a.elapsed += time.Since(began)
			a.pages += pages
			a.lastPages = pages
			a.read += a.live.lines.Load() - before
			a.maxPerPg = max(a.maxPerPg, maxPer)
		}
	}
	b.StopTimer()
	perPage := func(a *approach) float64 { return float64(a.read) / float64(a.pages) }
	newA, old := approaches[0], approaches[1]
	b.ReportMetric(perPage(newA), "lines-read/page")
	b.ReportMetric(perPage(old), "baseline-lines-read/page")
	var rows [][]string
	for _, a := range approaches {
		rows = append(rows, []string{a.name, fmt.Sprint(a.lastPages), fmt.Sprintf("%.0f", perPage(a)), fmt.Sprint(a.maxPerPg),
			fmt.Sprintf("%.0f", float64(a.read)/float64(b.N)), fmt.Sprintf("%.1f", ms(a.elapsed)/float64(a.pages)), ratio(perPage(a), perPage(old))})
	}
	table(fmt.Sprintf("Log pages of a running step: %d lines (%d a second), 1000 a page — lines read from the cluster", logPagesLines, logPagesRate),
		[]string{"path", "pages", "lines read/page", "max/page", "lines read/pass", "ms/page", "vs baseline"}, rows)
	if perPage(newA) <= 0 || perPage(old) <= 0 {
		b.Fatalf("impossible figure: %.0f and %.0f lines read per page", perPage(newA), perPage(old))
	}
}

// pageThrough reads every page of the step's log, following the cursors, and checks that the
// lines come numbered 1, 2, … up to logPagesLines. It returns the pages and the most lines one
// page read from the cluster.
func pageThrough(ctx context.Context, base, id, step string, live *countingLive) (int, int64, error) {
	cursor, next, pages := "", int64(1), 0
	var maxPer int64
	for {
		q := url.Values{"step": {step}, "limit": {"1000"}}
		if cursor != "" {
			q.Set("after", cursor)
		}
		before := live.lines.Load()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/jobs/"+id+"/logs?"+q.Encode(), nil)
		if err != nil {
			return pages, maxPer, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return pages, maxPer, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return pages, maxPer, fmt.Errorf("page %d: %d %s %v", pages+1, resp.StatusCode, body, err)
		}
		var p query.LogPage
		if err := json.Unmarshal(body, &p); err != nil {
			return pages, maxPer, err
		}
		if p.Source != "cluster" {
			return pages, maxPer, fmt.Errorf("page %d from %s, want cluster", pages+1, p.Source)
		}
		pages++
		maxPer = max(maxPer, live.lines.Load()-before)
		for _, l := range p.Lines {
			if l.N != next || l.Text != fmt.Sprintf("bench page line %d", next) {
				return pages, maxPer, fmt.Errorf("page %d: line %d %q, want line %d", pages, l.N, l.Text, next)
			}
			next++
		}
		if len(p.Lines) == 0 {
			if next != logPagesLines+1 {
				return pages, maxPer, fmt.Errorf("the pages ended after line %d of %d", next-1, logPagesLines)
			}
			return pages, maxPer, nil
		}
		cursor = p.Cursor
		if pages > logPagesLines/1000+2 {
			return pages, maxPer, fmt.Errorf("%d pages for %d lines", pages, logPagesLines)
		}
	}
}

// countingLive counts the log lines read from the cluster through it; with ignoreSince it asks
// for every log from its first line.
type countingLive struct {
	query.LiveLogs
	ignoreSince bool
	lines       atomic.Int64
}

func (c *countingLive) OpenLog(ctx context.Context, j *jobs.Job, pod, step string, o kube.LogOptions) (io.ReadCloser, error) {
	if c.ignoreSince {
		o.Since = time.Time{}
	}
	rc, err := c.LiveLogs.OpenLog(ctx, j, pod, step, o)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, lines: &c.lines}, nil
}

type countingReader struct {
	io.ReadCloser
	lines *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.lines.Add(int64(bytes.Count(p[:n], []byte("\n"))))
	return n, err
}

type benchJobs struct{ j *jobs.Job }

func (b benchJobs) GetJob(_ context.Context, id string) (*jobs.Job, error) {
	if id != b.j.ID {
		return nil, fmt.Errorf("job %s: %w", id, jobs.ErrNotFound)
	}
	return b.j, nil
}

// emptyLogStore has archived nothing (the step runs).
type emptyLogStore struct{}

func (emptyLogStore) LogChunks(context.Context, string, string, string, int64, int) ([]store.LogChunk, error) {
	return nil, nil
}
func (emptyLogStore) LogSteps(context.Context, string) ([]store.LogStep, error) { return nil, nil }
