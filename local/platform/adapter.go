package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// Watched resources of the adapter (DESIGN §7), as the adapter's Config JSON spells them.
var adapterResources = []struct {
	Group, Version, Resource string
}{
	{"batch", "v1", "jobs"},
	{"", "v1", "pods"},
}

// adapterEnv is the environment of the ApiServerSource receive adapter for this cluster, the
// same values the ApiServerSource controller gives it in a real cluster.
func (c *Cluster) adapterEnv() ([]string, error) {
	type gvr struct{ Group, Version, Resource string }
	type res struct {
		GVR      gvr    `json:"gvr"`
		Selector string `json:"selector"`
	}
	cfg := struct {
		Namespaces    []string `json:"namespaces"`
		AllNamespaces bool     `json:"allNamespaces"`
		Resources     []res    `json:"resources"`
		Mode          string   `json:"mode"`
	}{Namespaces: c.p.opts.Namespaces, Mode: "Resource"}
	for _, r := range adapterResources {
		cfg.Resources = append(cfg.Resources, res{GVR: gvr{r.Group, r.Version, r.Resource}, Selector: JobIDLabel})
	}
	source, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	overrides, err := json.Marshal(map[string]any{"extensions": map[string]string{"cluster": c.Name}})
	if err != nil {
		return nil, err
	}
	// The adapter always serves health probes on 8080 (a second adapter fails to and goes on);
	// its profiling port is ours to choose, so that adapters do not fight over 8008.
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		return nil, err
	}
	profiling := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return []string{
		"KUBECONFIG=" + c.Kubeconfig,
		"K_SINK=" + c.p.opts.Sink,
		"K_SOURCE_CONFIG=" + string(source),
		"K_CE_OVERRIDES=" + string(overrides),
		"NAME=omni-" + dnsName(c.Name),
		"NAMESPACE=" + c.p.opts.Namespaces[0],
		"SYSTEM_NAMESPACE=knative-eventing",
		"METRICS_DOMAIN=knative.dev/eventing",
		// Verbosity 2 makes client-go log "Caches populated" per reflector: our readiness signal.
		"K_KLOG_VERBOSITY=2",
		"PROFILING_PORT=" + strconv.Itoa(profiling),
	}, nil
}

// startAdapter starts the adapter unless it runs, and waits until it watches every resource in
// every namespace.
//
// Readiness: the adapter has no readiness endpoint of its own (its 8080 probe only says the
// process is up). Its watches are client-go reflectors, which log "Caches populated" (klog V(2))
// once the initial list is done; the watch then starts at that list's resourceVersion, so every
// later change of a watched object becomes an event. We wait for that line from each reflector
// (one per resource and namespace) in this run's output.
func (c *Cluster) startAdapter(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adapter != nil && !c.adapter.exited() {
		return nil
	}
	env, err := c.adapterEnv()
	if err != nil {
		return err
	}
	began := time.Now()
	proc, err := startProcess("adapter "+c.Name, c.Dir, c.AdapterLog(), env,
		filepath.Join(c.p.binDir, "apiserver_receive_adapter"))
	if err != nil {
		return err
	}
	c.adapter = proc
	// For the watchdog.
	if err := os.WriteFile(filepath.Join(c.Dir, "adapter.pid"), []byte(strconv.Itoa(proc.cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	var want [][]byte
	for _, r := range adapterResources {
		for _, ns := range c.p.opts.Namespaces {
			want = append(want, fmt.Appendf(nil, `reflector="%s/%s, Resource=%s/%s"`, r.Group, r.Version, r.Resource, ns))
		}
	}
	err = poll(ctx, func(context.Context) (bool, error) {
		if proc.exited() {
			return false, fmt.Errorf("adapter exited: %v", proc.err)
		}
		return adapterWatching(proc.output(), want), nil
	})
	if err != nil {
		proc.stop(5 * time.Second)
		c.adapter = nil
		return fmt.Errorf("start adapter: %w\n%s", err, files.Tail(proc.output(), tailLines))
	}
	c.logf("adapter ready in %s", time.Since(began).Round(time.Millisecond))
	return nil
}

// adapterWatching reports whether out holds a "Caches populated" line for every wanted reflector.
func adapterWatching(out []byte, want [][]byte) bool {
	for _, w := range want {
		found := false
		for line := range bytes.Lines(out) {
			if bytes.Contains(line, []byte("Caches populated")) && bytes.Contains(line, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// stopAdapter stops the adapter if it runs.
func (c *Cluster) stopAdapter() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.adapter == nil {
		return
	}
	c.adapter.stop(5 * time.Second)
	c.adapter = nil
	_ = os.Remove(filepath.Join(c.Dir, "adapter.pid"))
}

// AdapterLog is the path of the adapter's log (all its runs, appended).
func (c *Cluster) AdapterLog() string { return filepath.Join(c.Dir, "adapter.log") }
