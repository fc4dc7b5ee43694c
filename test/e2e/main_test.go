// Package e2e tests omni-orchestrator end to end on the local platform: the all-in-one process
// (every function, the router that delivers by config/'s Triggers, SQLite — or, with
// OMNI_E2E_STORE=cassandra, a real local Cassandra node) driving two simulated clusters, x86_64
// and aarch64, each watched by a real ApiServerSource adapter. `make test` runs the suite once
// on each store.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

var (
	omni *allinone.Main
	rec  = &recorder{}
)

// Users of the tests, besides the local admin.
var users = map[string]struct {
	password, role string
	services       []string
}{
	"alice": {"alice-pw", "submitter", []string{"team-a"}},
	"bob":   {"bob-pw", "viewer", []string{"team-b"}},
	"root":  {"root-pw", "admin", []string{"*"}},
}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode (needs the local clusters)")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "omni-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := writeUsers(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	writeSubscriptions(dir)
	logger, _ := runtime.NewLogger("warn")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var onCassandra bool
	switch store := os.Getenv("OMNI_E2E_STORE"); store {
	case "", "sqlite":
	case "cassandra":
		onCassandra = true
	default:
		fmt.Fprintf(os.Stderr, "e2e: OMNI_E2E_STORE=%q: want sqlite or cassandra\n", store)
		return 1
	}
	omni, err = allinone.Start(ctx, allinone.Options{
		DataDir: dir, Addr: "127.0.0.1:0", BackoffScale: 0.05, Logger: logger,
		Progress: os.Stderr, Tap: rec.add, Cassandra: onCassandra,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start all-in-one:", err)
		return 1
	}
	defer omni.Close()
	return m.Run()
}

func writeUsers(dir string) error {
	var htpasswd, usersYAML bytes.Buffer
	usersYAML.WriteString("users:\n")
	for name, u := range users {
		line, err := auth.HashPassword(name, u.password)
		if err != nil {
			return err
		}
		htpasswd.WriteString(line + "\n")
		svc, _ := json.Marshal(u.services)
		fmt.Fprintf(&usersYAML, "  %s: {role: %s, services: %s}\n", name, u.role, svc)
	}
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), htpasswd.Bytes(), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "credentials"), []byte("root:root-pw\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "users.yaml"), usersYAML.Bytes(), 0o600)
}

// recorder keeps the events the router delivered to status-sync.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) add(fn string, e event.Event) {
	if fn != "status-sync" {
		return
	}
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// has reports whether an event with a snapshot of object kind/name at resourceVersion rv was
// handled.
func (r *recorder) has(kind, name, rv string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name            string `json:"name"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if json.Unmarshal(e.Data(), &obj) == nil && obj.Kind == kind && obj.Metadata.Name == name && obj.Metadata.ResourceVersion == rv {
			return true
		}
	}
	return false
}

// of returns the recorded events about job id.
func (r *recorder) of(id string) []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.Event
	for _, e := range r.events {
		var obj struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if json.Unmarshal(e.Data(), &obj) == nil && obj.Metadata.Labels["omni.openeuler.org/job-id"] == id {
			out = append(out, e)
		}
	}
	return out
}

// client calls the API as one user, of the suite's all-in-one unless base is set.
type client struct {
	user, password string
	base           string
}

var (
	root  = client{user: "root", password: "root-pw"}
	alice = client{user: "alice", password: "alice-pw"}
	bob   = client{user: "bob", password: "bob-pw"}
	anon  = client{}
)

// on returns c calling the all-in-one m instead.
func (c client) on(m *allinone.Main) client {
	c.base = m.URL
	return c
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (c client) do(t *testing.T, method, path string, body any, header ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	base := omni.URL
	if c.base != "" {
		base = c.base
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func (r response) job(t *testing.T) *jobs.Job {
	t.Helper()
	var j jobs.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("decode job: %v: %s", err, r.body)
	}
	return &j
}

func (c client) submit(t *testing.T, req map[string]any, header ...string) *jobs.Job {
	t.Helper()
	r := c.do(t, http.MethodPost, "/v1/jobs", req, header...)
	if r.code != http.StatusCreated {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	return r.job(t)
}

// wait polls the job until done returns true, failing the test at the deadline.
func (c client) wait(t *testing.T, id string, what string, done func(*jobs.Job) bool) *jobs.Job {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last *jobs.Job
	for range tick.C {
		r := c.do(t, http.MethodGet, "/v1/jobs/"+id, nil)
		if r.code != http.StatusOK {
			t.Fatalf("get %s: %d %s", id, r.code, r.body)
		}
		last = r.job(t)
		if done(last) {
			return last
		}
		if time.Now().After(deadline) {
			break
		}
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("job %s: not %s within the deadline; last seen:\n%s", id, what, b)
	return nil
}

func terminal(j *jobs.Job) bool { return j.Status.Terminal() }

// settled: terminal, and every step that ran has ended.
func settled(j *jobs.Job) bool {
	if !j.Status.Terminal() {
		return false
	}
	for _, s := range j.Steps {
		if s.Status == jobs.StepRunning {
			return false
		}
	}
	return true
}

func rpmJob(service, arch string, labels map[string]string) map[string]any {
	return map[string]any{
		"service": service, "task": "buildrpm", "arch": arch, "domain": "e2e",
		"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
		"labels":     labels,
	}
}
