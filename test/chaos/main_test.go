// Package chaos runs omni-orchestrator as a cluster runs it — every function as its own
// processes, two replicas each (local/fleet), on a real local Cassandra and the local clusters —
// and breaks it while jobs run: replicas killed with SIGKILL and started again, an adapter
// stopped for a while, the store frozen for a few seconds. Then it checks that nothing was lost
// (docs/reliability.md, "Replicas and kills").
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/local/fleet"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	storecassandra "github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

var (
	omni *fleet.Fleet
	node *cassandra.Node
	// bigLog is the text kwok serves for every build-image container (the 20 MB logs).
	bigLog []byte
	// bigStep is the step of buildimagefromrelease whose log is bigLog.
	bigStep = "build-image"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("chaos: skipped in -short mode (needs the local clusters and Cassandra)")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	dir, err := os.MkdirTemp("", "omni-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if code == 0 {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "chaos: a test failed: the replicas' logs are kept in %s\n", filepath.Join(dir, "fleet", "logs"))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Our own Cassandra node (not OMNI_TEST_CASSANDRA's): the test freezes it.
	if node, err = cassandra.Start(ctx, cassandra.Options{Dir: filepath.Join(dir, "cassandra"), Progress: os.Stderr}); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: start Cassandra:", err)
		return 1
	}
	defer node.Stop()
	cfg := storecassandra.Config{Hosts: []string{node.Host()}, Keyspace: "omni", Timeout: 10 * time.Second}
	if err := schema.InitKeyspace(ctx, cfg, "1"); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	if err := schema.Migrate(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}

	bigPath := filepath.Join(dir, "build-image.log")
	var cri []byte
	cri, bigLog = platform.SampleLog(20<<20, "big ")
	if err := os.WriteFile(bigPath, cri, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 1
	}
	logger, _ := runtime.NewLogger("warn")
	omni, err = fleet.Start(ctx, fleet.Options{
		Dir:          filepath.Join(dir, "fleet"),
		Store:        "cassandra://" + node.Host() + "/omni?timeout=5s",
		Replicas:     2,
		Platform:     platform.Options{ContainerLogs: map[string]string{bigStep: bigPath}},
		BackoffScale: 0.05,
		PingInterval: 3 * time.Second,
		Logger:       logger,
		Progress:     os.Stderr,
		Env: []string{
			// Debug: a failure's diagnosis greps the replicas' logs for the job.
			"OMNI_LOG_LEVEL=debug",
			// A dead-lettered archive is asked again within the test's time, not after 20 minutes.
			"OMNI_ARCHIVE_GRACE=20s",
			"OMNI_NOTIFY_CALLBACK_SECRET=chaos",
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: start the fleet:", err)
		return 1
	}
	defer omni.Close()
	return m.Run()
}

// answer is a response of the fleet.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

// call makes one request to the fleet's public URL as its admin, retrying on connection errors,
// 429 and 5xx (what a client of a cluster behind a gateway does) until ctx ends. It returns the
// final answer.
func call(ctx context.Context, method, path string, body any, header ...string) (answer, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return answer{}, err
		}
	}
	wait := 100 * time.Millisecond
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, method, omni.URL+path, bytes.NewReader(raw))
		if err != nil {
			return answer{}, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		req.SetBasicAuth(omni.User, omni.Password)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
				return answer{resp.StatusCode, resp.Header, b}, nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(b))
			if rerr != nil {
				last = rerr.Error()
			}
		} else {
			last = err.Error()
		}
		t := time.NewTimer(wait + rand.N(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return answer{}, fmt.Errorf("%s %s: gave up (%v); last answer: %s", method, path, ctx.Err(), last)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// getJobs returns the jobs of ids (batchGet, 500 at a time).
func getJobs(ctx context.Context, ids []string) (map[string]*jobs.Job, error) {
	out := map[string]*jobs.Job{}
	for len(ids) > 0 {
		n := min(len(ids), 500)
		a, err := call(ctx, http.MethodPost, "/v1/jobs:batchGet", map[string]any{"ids": ids[:n]})
		if err != nil {
			return nil, err
		}
		if a.code != http.StatusOK {
			return nil, fmt.Errorf("batchGet: %d %s", a.code, a.body)
		}
		var got struct {
			Jobs    []*jobs.Job `json:"jobs"`
			Missing []string    `json:"missing"`
		}
		if err := json.Unmarshal(a.body, &got); err != nil {
			return nil, fmt.Errorf("batchGet: %w", err)
		}
		if len(got.Missing) > 0 {
			return nil, fmt.Errorf("batchGet: jobs missing: %v", got.Missing)
		}
		for _, j := range got.Jobs {
			out[j.ID] = j
		}
		ids = ids[n:]
	}
	return out, nil
}
