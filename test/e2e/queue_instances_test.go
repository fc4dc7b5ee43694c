package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/allinone"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra/schema"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// The two instances of one arch of TestQueueTwoInstancesOfOneArch: capacities (set by the
// queue policy's instances overrides) and weights (in the cluster configs).
var qiInstances = []struct {
	name             string
	capacity, weight int
}{{"aarch64", 2, 1}, {"aarch64-b", 3, 3}}

// TestQueueTwoInstancesOfOneArch: two local clusters of one arch, instances of different
// weights (1, 3) and capacities (2, 3 slots). A burst of 12 jobs at once, each held running:
// both instances are filled; then the running jobs are let go in waves while a second
// dispatcher runs duplicated passes beside the local one: watches on both clusters never see
// more unfinished Jobs on an instance than its capacity, no job is created twice (nor on both
// instances), and all succeed.
//
// The suite's all-in-one has one instance per arch, and its other tests rely on that (they
// follow their jobs on the cluster named by the arch), so this test starts an all-in-one of
// its own with just these two clusters (about as long as the suite's start: the clusters start
// side by side); on the Cassandra run its store is a keyspace of its own on the suite's node.
func TestQueueTwoInstancesOfOneArch(t *testing.T) {
	const arch, step, burst = "aarch64", "build-rpm", 12
	m := qiStart(t)
	c := root.on(m)
	watches := map[string]*qWatcher{}
	for _, in := range qiInstances {
		watches[in.name] = qWatchOn(t, m.Platform.Cluster(in.name).Clientset(), "qi")
	}
	storm := qStorm(t, m)

	// The burst: all at once.
	ids := make([]string, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			r := c.do(t, http.MethodPost, "/v1/jobs", rpmJob("qi", arch, map[string]string{platform.AnnotationHoldStep: step}))
			if r.code != http.StatusCreated {
				t.Errorf("submit %d: %d %s (want 201, never 503)", i, r.code, r.body)
				return
			}
			ids[i] = r.job(t).ID
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	where := func(id string) string { // the instance a job was created on, "" if none yet
		for name, w := range watches {
			w.mu.Lock()
			_, ok := w.createdRV[id]
			w.mu.Unlock()
			if ok {
				return name
			}
		}
		return ""
	}
	total := 0
	for _, in := range qiInstances {
		total += in.capacity
	}
	// Both filled: each instance's capacity of Jobs created, and no more.
	for _, in := range qiInstances {
		for k := range in.capacity {
			watches[in.name].next(t, fmt.Sprintf("job %d of the burst on %s", k+1, in.name))
		}
	}
	released := map[string]bool{}
	for started := total; ; {
		// Let go every job that runs now, run duplicated passes, and wait for the next wave.
		var running []string
		for _, id := range ids {
			if in := where(id); in != "" && !released[id] {
				running = append(running, id)
			}
		}
		for _, id := range running {
			qReleaseOn(t, m.Platform.Cluster(where(id)).Clientset(), id)
			released[id] = true
		}
		if started == burst {
			break
		}
		storm()
		want := min(burst, started+len(running))
		qiWaitStarted(t, watches, want)
		started = want
	}
	for _, id := range ids {
		c.wait(t, id, "succeeded", func(j *jobs.Job) bool { return j.Status == jobs.StatusSucceeded })
	}
	seen := map[string]string{}
	for _, in := range qiInstances {
		w := watches[in.name]
		for _, id := range ids {
			if where(id) == in.name {
				w.waitEnded(t, id)
			}
		}
		if n := w.maxInProgress(); n != in.capacity {
			t.Errorf("%s: at most %d jobs in progress at once, want exactly its capacity %d (filled, never over-filled)", in.name, n, in.capacity)
		}
		w.mu.Lock()
		for _, id := range w.started {
			if prev, ok := seen[id]; ok {
				t.Errorf("job %s created on %s and on %s", id, prev, in.name)
			}
			seen[id] = in.name
		}
		t.Logf("%s (capacity %d, weight %d): %d of the %d jobs", in.name, in.capacity, in.weight, len(w.started), burst)
		w.mu.Unlock()
	}
	if len(seen) != burst {
		t.Errorf("the watches saw %d jobs created, want %d", len(seen), burst)
	}
}

// qiWaitStarted waits until the watches saw n Jobs created in all.
func qiWaitStarted(t *testing.T, watches map[string]*qWatcher, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		got := 0
		for _, w := range watches {
			w.mu.Lock()
			got += len(w.started)
			w.mu.Unlock()
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watches saw %d Jobs created after 2 minutes, want %d", got, n)
		}
		<-tick.C
	}
}

// qiStart starts the test's own all-in-one: the two aarch64 clusters of qiInstances with their
// weights and a queue policy with their capacities; the suite's users; on the Cassandra run a
// keyspace of its own on the suite's node.
func qiStart(t *testing.T) *allinone.Main {
	t.Helper()
	began := time.Now()
	dir := t.TempDir()
	if err := writeUsers(dir); err != nil {
		t.Fatal(err)
	}
	policy := "instances:\n"
	weights := map[string]int{}
	var clusters []platform.ClusterSpec
	for _, in := range qiInstances {
		policy += fmt.Sprintf("  %s: {capacity: %d}\n", in.name, in.capacity)
		weights[in.name] = in.weight
		clusters = append(clusters, platform.ClusterSpec{Name: in.name, Arch: "aarch64"})
	}
	if err := os.WriteFile(filepath.Join(dir, "queue.yaml"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if omni.Cassandra != nil {
		cfg := cassandra.Config{Hosts: []string{omni.Cassandra.Host()}, Keyspace: "omni_instances", Consistency: "LOCAL_QUORUM",
			SerialConsistency: "LOCAL_SERIAL", Timeout: 10 * time.Second}
		if err := schema.InitKeyspace(ctx, cfg, "1"); err != nil {
			t.Fatal(err)
		}
		if err := schema.Migrate(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		t.Setenv("OMNI_STORE", "cassandra://"+omni.Cassandra.Host()+"/omni_instances?timeout=10s")
	}
	logger, _ := runtime.NewLogger("warn")
	m, err := allinone.Start(ctx, allinone.Options{
		DataDir: dir, Addr: "127.0.0.1:0", BackoffScale: 0.05, Logger: logger,
		Platform: platform.Options{Clusters: clusters}, Weights: weights,
	})
	if err != nil {
		t.Fatalf("start an all-in-one with two %s instances: %v", "aarch64", err)
	}
	t.Cleanup(func() {
		began := time.Now()
		if err := m.Close(); err != nil {
			t.Errorf("stop the all-in-one: %v", err)
		}
		t.Logf("own all-in-one stopped in %s", time.Since(began).Round(time.Millisecond))
	})
	for _, in := range qiInstances {
		if got := m.Policy.Current().Capacity(in.name, 0); got != in.capacity {
			t.Fatalf("instance %s has capacity %d in the policy, want %d", in.name, got, in.capacity)
		}
		cl, err := m.Deps.Clusters.Get(in.name)
		if err != nil {
			t.Fatal(err)
		}
		if cl.Weight != in.weight {
			t.Fatalf("instance %s has weight %d in the cluster config, want %d", in.name, cl.Weight, in.weight)
		}
	}
	t.Logf("own all-in-one with %d clusters started in %s", len(qiInstances), time.Since(began).Round(time.Millisecond))
	return m
}
