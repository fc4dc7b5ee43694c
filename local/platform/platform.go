// Package platform runs the local build platform of DESIGN §7 for tests and for the local
// all-in-one mode: one kwok cluster per architecture (real etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler; nodes and containers simulated by kwok) and, per
// cluster, the real Knative ApiServerSource receive adapter sending the cluster's Job and Pod
// events to a sink URL.
//
// Pods of a Job walk through their init containers one by one, then their containers, each
// "step" running for a short time (kwok stages in kwok/pod-stages.yaml). Tests steer them with
// pod annotations or labels (annotations win; the end-to-end tests pass them as job labels, which
// submit puts on the pod):
//
//	omni.test/fail-step: <container>     that init or main container fails; the pod ends Failed
//	omni.test/exit-code: "3"             ... with this exit code (default 1, must not be 0)
//	omni.test/reason: OOMKilled          ... and this reason (default Error)
//	omni.test/step-duration: 2s          how long each step runs (default 100ms); a Go
//	                                     duration or an RFC 3339 time at which the step ends
//	omni.test/duration.<container>: 5s   how long that step runs (for main containers, the
//	                                     first container's value counts)
//	omni.test/hold-step: <container>     that step runs until the annotation changes
//
// kwok re-reads the annotations whenever the pod changes, so patching the pod's annotations
// re-times the current step (e.g. remove hold-step to let a held step end now). A deleted pod
// that still runs ends first (running containers exit 137, phase Failed) and is removed once it
// has no finalizer left. pods/log of any container returns the CRI log file Cluster.LogsFile.
package platform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// Annotations that steer the simulated pods; see the package documentation.
const (
	AnnotationFailStep     = "omni.test/fail-step"
	AnnotationExitCode     = "omni.test/exit-code"
	AnnotationReason       = "omni.test/reason"
	AnnotationStepDuration = "omni.test/step-duration"
	AnnotationHoldStep     = "omni.test/hold-step"
	// AnnotationDurationPrefix + container name sets the duration of that step.
	AnnotationDurationPrefix = "omni.test/duration."
)

// JobIDLabel is the label whose presence selects the Jobs and Pods the adapters watch.
const JobIDLabel = names.LabelJobID

// ClusterSpec names one cluster to start.
type ClusterSpec struct {
	// Name is the logical cluster name, sent as the `cluster` CloudEvent extension.
	Name string
	// Arch is x86_64 or aarch64; the fake nodes get the matching kubernetes.io/arch label.
	Arch string
}

// DefaultClusters are the clusters Start runs when Options.Clusters is empty.
var DefaultClusters = []ClusterSpec{{Name: "x86_64", Arch: "x86_64"}, {Name: "aarch64", Arch: "aarch64"}}

// Options configure Start.
type Options struct {
	// WorkDir holds the clusters' files and every process's log. Default: a new temporary
	// folder, removed by Stop.
	WorkDir string
	// Sink is the URL the adapters send CloudEvents to. Empty: no adapter is started.
	Sink string
	// Namespaces are created if needed and watched by the adapters. Default: ["default"].
	Namespaces []string
	// Clusters to start. Default: DefaultClusters.
	Clusters []ClusterSpec
	// NodesPerCluster is the number of fake nodes per cluster (cpu 32, memory 128Gi, 110 pods
	// each). Default: 1.
	NodesPerCluster int
	// Log receives progress lines. Default: none.
	Log io.Writer
	// ContainerLogs maps container names to the CRI-format file that pods/log returns for the
	// containers of that name, on every cluster (the others get Cluster.LogsFile). The files
	// are read when a log is asked for: write them before the steps run.
	ContainerLogs map[string]string
	// StartTimeout bounds Start (the caller's context may end it sooner). Default: 3 minutes.
	StartTimeout time.Duration
	// Persistent keeps the clusters in WorkDir from one run to the next (the local mode's data
	// folder): their kwokctl names do not change between runs; Start resumes each cluster whose
	// state WorkDir holds — after Stop, or after the previous run died (kill -9, a power cut) —
	// on its etcd data, with the same ports and kubeconfig, so the Jobs and Pods on it carry on;
	// Start removes from WorkDir the clusters no longer used (of earlier runs, named with a
	// random suffix, or of clusters not in Clusters) and kills what still runs there; Stop stops
	// the clusters' processes but keeps their state (a resumed cluster keeps the ports and
	// ContainerLogs it was created with). Default: false (a new cluster per Start, deleted by
	// Stop). Two runs never share a work dir: Start fails while another holds it.
	Persistent bool
}

// Platform is a running set of clusters with their adapters.
type Platform struct {
	opts    Options
	binDir  string
	workDir string
	// ownWorkDir says Stop removes workDir.
	ownWorkDir bool
	kwokDir    string
	clusters   []*Cluster
	// watchdog kills the clusters and adapters if this process dies without Stop.
	watchdog *watchdog
	// lock is the open lock file of workDir, held until Stop.
	lock *os.File
	// removed is what Start removed of earlier runs.
	removed Removed

	mu      sync.Mutex
	stopped bool
}

// Start builds the tools if needed (see Tools), then starts the clusters of opts, their fake
// nodes and adapters, and returns once pods can be created in every namespace and every adapter
// watches. On error it stops what it started.
func Start(ctx context.Context, opts Options) (_ *Platform, err error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	began := time.Now()

	p := &Platform{opts: opts}
	defer func() {
		if err != nil {
			p.Stop()
		}
	}()
	if p.binDir, err = tools(ctx, opts.Log); err != nil {
		return nil, err
	}
	if opts.WorkDir == "" {
		if p.workDir, err = os.MkdirTemp("", "omni-platform-"); err != nil {
			return nil, fmt.Errorf("create work dir: %w", err)
		}
		p.ownWorkDir = true
	} else {
		if p.workDir, err = filepath.Abs(opts.WorkDir); err != nil {
			return nil, fmt.Errorf("work dir: %w", err)
		}
	}
	p.kwokDir = filepath.Join(p.workDir, "kwok")
	if err := os.MkdirAll(p.kwokDir, 0o755); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	if p.lock, err = lockWorkDir(p.workDir); err != nil {
		return nil, err
	}
	stopEarlierWatchdog(p.workDir)
	if p.watchdog, err = startWatchdog(p.workDir); err != nil {
		return nil, err
	}

	// A persistent work dir names its clusters the same in every run, so that the next run
	// finds them; otherwise each Start names its own.
	suffix := "-"
	if !opts.Persistent {
		suffix = "-" + randomSuffix() + "-"
	}
	taken := map[int]bool{}
	var fresh []*Cluster
	for _, spec := range opts.Clusters {
		c, err := newCluster(p, spec, suffix)
		if err != nil {
			return nil, err
		}
		p.clusters = append(p.clusters, c)
		if opts.Persistent && c.loadState() {
			// Its state is the jobs' state: kept by Stop even if resuming fails.
			c.resume, c.keep = true, true
			for _, port := range c.ports.list() {
				taken[port] = true
			}
		} else {
			fresh = append(fresh, c)
		}
	}
	if opts.Persistent {
		if p.removed, err = p.removeUnused(ctx); err != nil {
			return nil, err
		}
		if len(p.removed.Folders) > 0 {
			p.logf("platform: removed %d folders of earlier runs that no cluster uses (%d MB): %s",
				len(p.removed.Folders), p.removed.Bytes>>20, strings.Join(p.removed.Folders, ", "))
		}
	}
	free, err := freePorts(6*len(fresh), taken)
	if err != nil {
		return nil, err
	}
	for i, c := range fresh {
		ps := free[6*i:]
		c.ports = ports{etcd: ps[0], etcdPeer: ps[1], apiserver: ps[2], controllerManager: ps[3], scheduler: ps[4], kwok: ps[5]}
	}

	// The clusters start side by side: each one is mostly waiting for its own API server.
	errs := make([]error, len(p.clusters))
	var wg sync.WaitGroup
	for i, c := range p.clusters {
		wg.Go(func() {
			if errs[i] = c.start(ctx); errs[i] != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", c.Name, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.logf("platform: %d clusters ready in %s (work dir %s)", len(p.clusters), time.Since(began).Round(time.Millisecond), p.workDir)
	return p, nil
}

func (o *Options) setDefaults() error {
	if len(o.Clusters) == 0 {
		o.Clusters = DefaultClusters
	}
	seen := map[string]bool{}
	for _, c := range o.Clusters {
		if c.Name == "" {
			return errors.New("platform: a cluster has no name")
		}
		if seen[c.Name] {
			return fmt.Errorf("platform: cluster %q given twice", c.Name)
		}
		seen[c.Name] = true
		if KubeArch(c.Arch) == "" {
			return fmt.Errorf("platform: cluster %s: unknown arch %q (want x86_64 or aarch64)", c.Name, c.Arch)
		}
	}
	if len(o.Namespaces) == 0 {
		o.Namespaces = []string{"default"}
	}
	if o.NodesPerCluster <= 0 {
		o.NodesPerCluster = 1
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 3 * time.Minute
	}
	return nil
}

// KubeArch maps an architecture name of the API (x86_64, aarch64) to the value of the
// kubernetes.io/arch label (amd64, arm64); "" when unknown.
func KubeArch(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return ""
}

// Clusters returns the clusters in the order of Options.Clusters.
func (p *Platform) Clusters() []*Cluster {
	return append([]*Cluster(nil), p.clusters...)
}

// Cluster returns the cluster with the given logical name, or nil.
func (p *Platform) Cluster(name string) *Cluster {
	for _, c := range p.clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// WorkDir is the folder holding the clusters' files and logs.
func (p *Platform) WorkDir() string { return p.workDir }

// Removed is what Start removed of earlier runs of the work dir (Options.Persistent).
func (p *Platform) Removed() Removed { return p.removed }

// Sink is the URL the adapters send to.
func (p *Platform) Sink() string { return p.opts.Sink }

// StopAdapter stops the adapter of the named cluster; events of that cluster are then lost,
// as when the real source is down. Stopping a stopped adapter does nothing.
func (p *Platform) StopAdapter(name string) error {
	c := p.Cluster(name)
	if c == nil {
		return fmt.Errorf("platform: no cluster %q", name)
	}
	c.stopAdapter()
	return nil
}

// StartAdapter (re)starts the adapter of the named cluster and waits until it watches. Like the
// real source after a restart, it sends nothing for objects that exist when it starts, only for
// later changes. Starting a running adapter does nothing.
func (p *Platform) StartAdapter(ctx context.Context, name string) error {
	c := p.Cluster(name)
	if c == nil {
		return fmt.Errorf("platform: no cluster %q", name)
	}
	if p.opts.Sink == "" {
		return errors.New("platform: no sink URL, so no adapter")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return c.startAdapter(ctx)
}

// Stop stops every adapter and cluster (processes that do not end are killed by process group)
// and removes the work dir if Start created it. With Options.Persistent, the clusters that were
// ready are stopped but kept for the next Start. It is safe to call more than once.
func (p *Platform) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	var wg sync.WaitGroup
	for _, c := range p.clusters {
		wg.Go(c.stop)
	}
	wg.Wait()
	p.watchdog.stop()
	if p.lock != nil {
		p.lock.Close()
	}
	if p.ownWorkDir {
		_ = os.RemoveAll(p.workDir)
	}
}

func (p *Platform) logf(format string, args ...any) {
	fmt.Fprintf(p.opts.Log, format+"\n", args...)
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// dnsName turns a logical name into a DNS label fragment: x86_64 → x86-64.
func dnsName(s string) string {
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, s)
}
