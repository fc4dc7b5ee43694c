package kube

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// twoInstances: two x86_64 instances with room for capacity jobs each, on empty clusters.
func twoInstances(capacity int) (*Clusters, []*fake.Clientset) {
	cs := &Clusters{byName: map[string]*Cluster{}, byArch: map[string][]*Cluster{}}
	var clients []*fake.Clientset
	for _, name := range []string{"x86-a", "x86-b"} {
		client := fake.NewClientset()
		c := &Cluster{Instance: Instance{Name: name, Namespace: "default", Capacity: capacity, Weight: 1}, Arch: "x86_64", Client: client}
		cs.byName[name] = c
		cs.byArch["x86_64"] = append(cs.byArch["x86_64"], c)
		clients = append(clients, client)
	}
	return cs, clients
}

// A burst larger than one instance's room but not than both fits: only the chosen instance
// counts each job, so no submit is refused.
func TestPickBurstUsesEveryInstance(t *testing.T) {
	const capacity = 3
	for name, burst := range map[string]int{"one more than an instance": capacity + 1, "both full": 2 * capacity} {
		t.Run(name, func(t *testing.T) {
			cs, _ := twoInstances(capacity)
			picked := map[string]int{}
			var refused []error
			for range burst {
				c, err := cs.Pick(t.Context(), "x86_64")
				if err != nil {
					refused = append(refused, err)
					continue
				}
				picked[c.Name]++
			}
			if len(refused) > 0 {
				t.Errorf("%d of %d submits refused (%v); picked %v", len(refused), burst, refused[0], picked)
			}
			for n, k := range picked {
				if k > capacity {
					t.Errorf("%s got %d jobs, capacity %d", n, k, capacity)
				}
			}
			if _, err := cs.Pick(t.Context(), "x86_64"); burst == 2*capacity && !errors.Is(err, ErrNoCapacity) {
				t.Errorf("a pick past both capacities: %v, want ErrNoCapacity", err)
			}
		})
	}
}

// The same from many goroutines at once: exactly the capacity of both is handed out.
func TestPickConcurrentBurst(t *testing.T) {
	const capacity = 20
	cs, _ := twoInstances(capacity)
	var mu sync.Mutex
	ok, refused := 0, 0
	var wg sync.WaitGroup
	for range 2*capacity + 10 {
		wg.Go(func() {
			_, err := cs.Pick(t.Context(), "x86_64")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused++
			} else {
				ok++
			}
		})
	}
	wg.Wait()
	if ok != 2*capacity || refused != 10 {
		t.Errorf("%d picked, %d refused; want %d and 10", ok, refused, 2*capacity)
	}
}

// A slow count on one instance's API server does not hold that instance's lock: another pick
// waits for it only as long as its own context allows, and takes the other instance.
func TestPickDoesNotWaitForAnotherCount(t *testing.T) {
	cs, clients := twoInstances(5)
	entered, release := make(chan struct{}), make(chan struct{})
	// The count of x86-a hangs (the fake's list does not see a context; client-go's does).
	clients[0].PrependReactor("list", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		close(entered)
		<-release
		return false, nil, nil
	})
	defer close(release)
	go func() { _, _ = cs.Pick(context.Background(), "x86_64") }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first pick did not list the jobs within 30s")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	type result struct {
		c   *Cluster
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := cs.Pick(ctx, "x86_64")
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || r.c.Name != "x86-b" {
			t.Errorf("pick while x86-a's count hangs: %v %v, want x86-b", r.c, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a pick whose context ended still waited for another pick's count after 30s")
	}
}
