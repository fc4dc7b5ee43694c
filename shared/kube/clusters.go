// Package kube wraps the build clusters: the per-arch cluster configs (config/clusters/*.yaml),
// a client per engine instance, the choice of an instance for a new job, and the few calls the
// functions make on a cluster: create a job's objects, read them and its pods back, locate a
// step's container, stream its log, remove the pod finalizer, delete the objects — always in the
// namespace stored with the job. It is the one place that talks to a build cluster.
package kube

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// ArchConfig is one per-arch cluster config file: config/clusters/<arch>.yaml.
type ArchConfig struct {
	// Arch is x86_64 or aarch64; it must match the file name.
	Arch string `json:"arch"`
	// Instances are the engine instances (build clusters) of this arch.
	Instances []Instance `json:"instances"`
}

// Instance is one engine instance: a build cluster that runs jobs of one arch.
type Instance struct {
	// Name identifies the cluster; it is stored with each job and set as the `cluster` extension
	// by that cluster's ApiServerSource. Unique across all arches.
	Name string `json:"name"`
	// Kubeconfig is the path of a kubeconfig file (in the cluster: a mounted Secret key).
	// Empty means the in-cluster config of the pod itself.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Context selects a context of the kubeconfig (default: its current context).
	Context string `json:"context,omitempty"`
	// Namespace is where job objects are created (default "default").
	Namespace string `json:"namespace,omitempty"`
	// Capacity is the most non-finished jobs the instance takes at once (0 = unlimited).
	Capacity int `json:"capacity,omitempty"`
	// Weight biases the choice among instances with room (default 1).
	Weight int `json:"weight,omitempty"`
}

// Cluster is a configured engine instance with its clients.
type Cluster struct {
	Instance
	Arch    string
	Client  kubernetes.Interface
	Dynamic dynamic.Interface

	// mu guards the capacity count below; it is never held across an API call.
	mu        sync.Mutex
	active    int       // non-finished jobs: the last count plus the jobs reserved since
	activeAt  time.Time // when active was counted
	activeErr error
	// refreshing is closed when the count in flight is stored (nil: none in flight);
	// reservedDuring counts the jobs reserved while it is in flight, which it may not see.
	refreshing     chan struct{}
	reservedDuring int
}

// Clusters is the set of engine instances of every arch.
type Clusters struct {
	byName map[string]*Cluster
	byArch map[string][]*Cluster
}

// LoadDir reads every <arch>.yaml of dir and builds clients for each instance.
func LoadDir(dir string) (*Clusters, error) {
	var cfgs []ArchConfig
	for _, arch := range jobs.Arches {
		path := filepath.Join(dir, arch+".yaml")
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read cluster config: %w", err)
		}
		var c ArchConfig
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		if c.Arch == "" {
			c.Arch = arch
		}
		if c.Arch != arch {
			return nil, fmt.Errorf("%s: arch %q does not match the file name", path, c.Arch)
		}
		for i := range c.Instances {
			if k := c.Instances[i].Kubeconfig; k != "" && !filepath.IsAbs(k) {
				c.Instances[i].Kubeconfig = filepath.Join(dir, k)
			}
		}
		cfgs = append(cfgs, c)
	}
	return New(cfgs)
}

// New builds the clusters of the given configs.
func New(cfgs []ArchConfig) (*Clusters, error) {
	cs := &Clusters{byName: map[string]*Cluster{}, byArch: map[string][]*Cluster{}}
	for _, c := range cfgs {
		if jobs.KubeArch(c.Arch) == "" {
			return nil, fmt.Errorf("cluster config: unknown arch %q (want one of %s)", c.Arch, strings.Join(jobs.Arches, ", "))
		}
		for _, in := range c.Instances {
			if in.Name == "" {
				return nil, fmt.Errorf("cluster config %s: an instance has no name", c.Arch)
			}
			if _, dup := cs.byName[in.Name]; dup {
				return nil, fmt.Errorf("cluster config: instance %q defined twice", in.Name)
			}
			rc, err := restConfig(in)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: %w", in.Name, err)
			}
			cl, err := newCluster(in, c.Arch, rc)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: %w", in.Name, err)
			}
			cs.byName[in.Name] = cl
			cs.byArch[c.Arch] = append(cs.byArch[c.Arch], cl)
		}
	}
	return cs, nil
}

func newCluster(in Instance, arch string, rc *rest.Config) (*Cluster, error) {
	if in.Namespace == "" {
		in.Namespace = "default"
	}
	if in.Weight <= 0 {
		in.Weight = 1
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 100, 200
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Cluster{Instance: in, Arch: arch, Client: client, Dynamic: dyn}, nil
}

func restConfig(in Instance) (*rest.Config, error) {
	if in.Kubeconfig == "" {
		return rest.InClusterConfig()
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: in.Kubeconfig}
	over := &clientcmd.ConfigOverrides{CurrentContext: in.Context}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, over).ClientConfig()
}

// Get returns the cluster called name or jobs.ErrNotFound.
func (cs *Clusters) Get(name string) (*Cluster, error) {
	if c, ok := cs.byName[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("cluster %q: %w", name, jobs.ErrNotFound)
}

// All returns every cluster, sorted by name.
func (cs *Clusters) All() []*Cluster {
	out := make([]*Cluster, 0, len(cs.byName))
	for _, c := range cs.byName {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Arches returns the arches that have at least one instance.
func (cs *Clusters) Arches() []string {
	var out []string
	for _, a := range jobs.Arches {
		if len(cs.byArch[a]) > 0 {
			out = append(out, a)
		}
	}
	return out
}

// ErrNoCapacity means every instance of the arch is at capacity (or unreachable).
var ErrNoCapacity = errors.New("no engine instance with free capacity")

// Pick chooses an instance of arch for a new job: among the instances with free capacity,
// one at random in proportion to weight. Unknown arch is an *jobs.InvalidError.
func (cs *Clusters) Pick(ctx context.Context, arch string) (*Cluster, error) {
	cands := cs.byArch[arch]
	if len(cands) == 0 {
		if jobs.KubeArch(arch) == "" {
			return nil, jobs.Invalid("arch", "unknown architecture %q (want one of %s)", arch, strings.Join(jobs.Arches, ", "))
		}
		return nil, jobs.Invalid("arch", "no engine instance is configured for %s (configured: %s)", arch, strings.Join(cs.Arches(), ", "))
	}
	var free []*Cluster
	var lastErr error
	for _, c := range cands {
		ok, err := c.hasRoom(ctx)
		if err != nil {
			lastErr = err
			continue
		}
		if ok {
			free = append(free, c)
		}
	}
	// Only the instance chosen counts the job; if another submit took its last place in the
	// meantime, choose again among the others.
	for len(free) > 0 {
		i := pickWeighted(free)
		if c := free[i]; c.reserve() {
			return c, nil
		}
		free = slices.Delete(free, i, i+1)
	}
	if lastErr != nil {
		return nil, fmt.Errorf("pick %s instance: %w: %w", arch, jobs.ErrUnavailable, lastErr)
	}
	return nil, fmt.Errorf("pick %s instance: %w: %w", arch, jobs.ErrUnavailable, ErrNoCapacity)
}

// pickWeighted returns the index of one of cs at random in proportion to weight.
func pickWeighted(cs []*Cluster) int {
	total := 0
	for _, c := range cs {
		total += c.Weight
	}
	n := rand.IntN(total)
	for i, c := range cs {
		if n < c.Weight {
			return i
		}
		n -= c.Weight
	}
	return len(cs) - 1
}

// activeTTL bounds how stale the active-job count used for capacity may be.
const activeTTL = 2 * time.Second

// hasRoom reports whether c takes one more job now, counting its active jobs again when the
// count is older than activeTTL. It does not count the job: reserve does, for the instance
// chosen.
func (c *Cluster) hasRoom(ctx context.Context) (bool, error) {
	if c.Capacity <= 0 {
		return true, nil
	}
	if err := c.refresh(ctx); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.activeErr != nil {
		return false, c.activeErr
	}
	return c.active < c.Capacity, nil
}

// reserve counts a job about to be created on c (until the next count sees it), if c has room.
func (c *Cluster) reserve() bool {
	if c.Capacity <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.activeErr != nil || c.active >= c.Capacity {
		return false
	}
	c.active++
	if c.refreshing != nil {
		c.reservedDuring++
	}
	return true
}

// refresh counts c's active jobs again if the count is stale. One count runs at a time per
// cluster, without c.mu held; other callers wait for it (or for their ctx).
func (c *Cluster) refresh(ctx context.Context) error {
	c.mu.Lock()
	for time.Since(c.activeAt) > activeTTL {
		if ch := c.refreshing; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return fmt.Errorf("count jobs on %s: %w", c.Name, ctx.Err())
			}
			c.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		c.refreshing, c.reservedDuring = ch, 0
		c.mu.Unlock()
		n, err := c.countActive(ctx)
		c.mu.Lock()
		c.active, c.activeErr, c.activeAt = n+c.reservedDuring, err, time.Now()
		c.refreshing = nil
		close(ch)
		if err != nil && ctx.Err() != nil {
			// Our caller gave up: do not keep its cancellation as the cluster's state.
			c.activeAt = time.Time{}
			c.mu.Unlock()
			return err
		}
	}
	c.mu.Unlock()
	return nil
}

func (c *Cluster) countActive(ctx context.Context) (int, error) {
	list, err := c.Client.BatchV1().Jobs(c.Namespace).List(ctx, listOpts(names.LabelManagedBy+"="+names.ManagedBy))
	if err != nil {
		return 0, fmt.Errorf("count jobs on %s: %w", c.Name, err)
	}
	n := 0
	for _, j := range list.Items {
		if !slices.ContainsFunc(j.Status.Conditions, finishedCondition) {
			n++
		}
	}
	return n, nil
}

// ClusterName returns the engine instance name (stored with each job).
func (c *Cluster) ClusterName() string { return c.Name }

// JobNamespace returns the namespace job objects are created in.
func (c *Cluster) JobNamespace() string { return c.Namespace }
