package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// The all-in-one with its local clusters, started by the first benchmark that needs it.
var (
	omniOnce sync.Once
	omni     *allinone.Main
	omniErr  error
	omniDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	// cassandratest.Main runs the benchmarks, then stops the Cassandra node the cold-start
	// benchmark started (the functions keep state in Cassandra only).
	code := cassandratest.Main(m)
	if omni != nil {
		// Let the router deliver what the clusters sent so far (status-sync may be behind the
		// pods of the last runs), so that Close loses nothing.
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := omni.Router.Drain(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		cancel()
		fmt.Fprintf(os.Stderr, "bench: router drained in %s\n", time.Since(began).Round(time.Millisecond))
		began = time.Now()
		if err := omni.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: stop all-in-one:", err)
		}
		fmt.Fprintf(os.Stderr, "bench: all-in-one stopped in %s\n", time.Since(began).Round(time.Millisecond))
	}
	if omniDir != "" {
		os.RemoveAll(omniDir)
	}
	os.Exit(code)
}

// allInOne returns the shared all-in-one, starting it (and the local clusters) on first use.
func allInOne(b *testing.B) *allinone.Main {
	b.Helper()
	omniOnce.Do(func() {
		began := time.Now()
		if omniDir, omniErr = os.MkdirTemp("", "omni-bench-"); omniErr != nil {
			return
		}
		logger, err := runtime.NewLogger("error")
		if err != nil {
			omniErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// Four fake nodes: a buildrpm pod asks for 2 CPUs, so a node runs 16 at once, and the
		// pods of a run should not queue for minutes before the cluster settles.
		omni, omniErr = allinone.Start(ctx, allinone.Options{
			DataDir: omniDir, Addr: "127.0.0.1:0", Logger: logger, Progress: os.Stderr,
			Platform: platform.Options{NodesPerCluster: 4},
		})
		if omniErr == nil {
			fmt.Fprintf(os.Stderr, "bench: all-in-one ready in %s\n", time.Since(began).Round(time.Millisecond))
		}
	})
	if omniErr != nil {
		b.Fatalf("start the all-in-one: %v", omniErr)
	}
	return omni
}

// sample is one measured run: the latency of each operation and the wall time of all of them.
type sample struct {
	lat     []time.Duration
	elapsed time.Duration
}

// quantile returns the q-quantile (nearest rank) of the latencies.
func (s sample) quantile(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	l := slices.Clone(s.lat)
	slices.Sort(l)
	i := int(math.Ceil(q*float64(len(l)))) - 1
	return l[min(max(i, 0), len(l)-1)]
}

// add appends another run of the same thing.
func (s *sample) add(o sample) {
	s.lat = append(s.lat, o.lat...)
	s.elapsed += o.elapsed
}

// perSecond is the throughput of the run.
func (s sample) perSecond() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(len(s.lat)) / s.elapsed.Seconds()
}

// results keeps the last sample of each sub-benchmark (the testing package runs a benchmark
// with growing b.N; the last run is the one it reports).
type results struct {
	mu sync.Mutex
	m  map[string]sample
}

func (r *results) put(name string, s sample) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]sample{}
	}
	r.m[name] = s
}

func (r *results) get(name string) (sample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[name]
	return s, ok
}

// mustBePossible fails the benchmark when s holds a figure that cannot be: a latency of zero
// or less means the clocks measured something else than the path (an end clock that came late).
func (s sample) mustBePossible(b *testing.B, what string) {
	b.Helper()
	for _, d := range s.lat {
		if d <= 0 {
			b.Fatalf("%s: impossible latency %v (of %d); the clocks do not measure the path", what, d, len(s.lat))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ratio formats a/b as "2.31x", or "-" when b is missing.
func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// table prints rows to stdout, aligned, under a title.
func table(title string, header []string, rows [][]string) {
	fmt.Printf("\n%s\n", title)
	printRows(os.Stdout, header, rows)
	fmt.Println()
}

func printRows(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	tw.Flush()
}

// submitted is what the benchmarks read of a job that POST /v1/jobs answered.
type submitted struct {
	ID     string      `json:"id"`
	Status jobs.Status `json:"status"`
}

// submitJob submits req through POST /v1/jobs of the public URL base as user and returns the
// job of the 201 answer (any other answer is an error).
func submitJob(ctx context.Context, hc *http.Client, base, user, password string, req map[string]any) (submitted, error) {
	var j submitted
	body, err := json.Marshal(req)
	if err != nil {
		return j, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/jobs", bytes.NewReader(body))
	if err != nil {
		return j, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.SetBasicAuth(user, password)
	resp, err := hc.Do(hr)
	if err != nil {
		return j, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return j, err
	}
	if resp.StatusCode != http.StatusCreated {
		return j, fmt.Errorf("POST /v1/jobs: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &j); err != nil {
		return j, fmt.Errorf("decode the job: %w", err)
	}
	return j, nil
}
