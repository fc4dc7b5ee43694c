package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// Cluster is one running kwok cluster.
type Cluster struct {
	// Name is the logical name (the `cluster` CloudEvent extension), e.g. x86_64.
	Name string
	// Arch is x86_64 or aarch64.
	Arch string
	// KubeArch is the kubernetes.io/arch label of its nodes: amd64 or arm64.
	KubeArch string
	// Kubeconfig is the path of an admin kubeconfig for the cluster.
	Kubeconfig string
	// KwokName is the kwokctl cluster name: omni-<name> in a persistent work dir, else with a
	// random part unique per Platform.
	KwokName string
	// Dir holds this cluster's config and the logs of kwokctl and the adapter; the
	// components' logs are in KwokDir/logs.
	Dir string
	// KwokDir is kwokctl's folder of the cluster (kubeconfig, pki, component logs and pids).
	KwokDir string
	// LogsFile is the CRI-format file that pods/log returns for every container. Tests may
	// rewrite it (lines like `2026-11-27T19:00:00.000000001Z stdout F text`).
	LogsFile string
	// Nodes are the names of the fake nodes.
	Nodes []string

	p         *Platform
	ports     ports
	rest      *rest.Config
	clientset kubernetes.Interface

	// resume: the work dir holds this cluster's state (Options.Persistent); start resumes it.
	resume bool
	// resumedAt is when resuming began: leases renewed before are the earlier run's.
	resumedAt time.Time

	mu      sync.Mutex
	created bool // kwokctl create cluster ran, or the cluster was resumed (so stop must run)
	// keep: the cluster has been ready, so a persistent platform's stop keeps its state.
	keep    bool
	adapter *process
}

type ports struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok int
}

func (ps ports) list() []int {
	return []int{ps.etcd, ps.etcdPeer, ps.apiserver, ps.controllerManager, ps.scheduler, ps.kwok}
}

// newCluster prepares the cluster of spec, named omni<infix><name> for kwokctl.
func newCluster(p *Platform, spec ClusterSpec, infix string) (*Cluster, error) {
	c := &Cluster{
		Name:     spec.Name,
		Arch:     spec.Arch,
		KubeArch: KubeArch(spec.Arch),
		KwokName: "omni" + infix + dnsName(spec.Name),
		p:        p,
	}
	c.Dir = filepath.Join(p.workDir, dnsName(spec.Name))
	c.KwokDir = filepath.Join(p.kwokDir, "clusters", c.KwokName)
	c.Kubeconfig = filepath.Join(c.KwokDir, "kubeconfig.yaml")
	c.LogsFile = filepath.Join(c.Dir, "container.log")
	for i := range p.opts.NodesPerCluster {
		c.Nodes = append(c.Nodes, fmt.Sprintf("%s-node-%d", dnsName(spec.Name), i))
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	return c, nil
}

// RESTConfig returns a copy of the admin client config of the cluster.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.rest) }

// Clientset returns a client of the cluster.
func (c *Cluster) Clientset() kubernetes.Interface { return c.clientset }

func (c *Cluster) logf(format string, args ...any) {
	c.p.logf("platform: %s: "+format, append([]any{c.Name}, args...)...)
}

func (c *Cluster) start(ctx context.Context) error {
	began := time.Now()
	if c.resume {
		if err := c.resumeCluster(ctx); err != nil {
			return err
		}
		c.logf("kwokctl resumed %s in %s", c.KwokName, time.Since(began).Round(time.Millisecond))
	} else {
		if err := c.create(ctx); err != nil {
			return err
		}
		c.logf("kwokctl created %s in %s", c.KwokName, time.Since(began).Round(time.Millisecond))
	}
	if err := c.connect(); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return fmt.Errorf("%w\n%s", err, c.componentLogs())
	}
	if c.p.opts.Persistent && !c.resume {
		if err := c.saveState(); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.keep = true
	c.mu.Unlock()
	c.logf("API server, %d nodes and namespaces %v ready in %s", len(c.Nodes), c.p.opts.Namespaces, time.Since(began).Round(time.Millisecond))
	if c.p.opts.Sink != "" {
		if err := c.startAdapter(ctx); err != nil {
			return err
		}
		c.logf("adapter watching after %s", time.Since(began).Round(time.Millisecond))
	}
	return nil
}

// create runs kwokctl create cluster with our config: pinned binaries, the ports Start chose
// (kwokctl's own choice counts down from 32767 in every process, so parallel test processes
// would collide), our stages and logs.
func (c *Cluster) create(ctx context.Context) error {
	if c.p.opts.Persistent {
		// What an earlier run left of a cluster that never became ready (it died while
		// creating it): not resumable, so it starts anew.
		if err := c.killLeftovers(ctx); err != nil {
			return err
		}
		for _, p := range []string{c.KwokDir, c.statePath(), filepath.Join(c.Dir, "adapter.pid")} {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove an unfinished cluster: %w", err)
			}
		}
	}
	cfg, err := c.kwokConfig()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(c.Dir, "kwok.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.LogsFile, []byte(defaultContainerLog()), 0o644); err != nil {
		return err
	}
	c.mu.Lock()
	c.created = true
	c.mu.Unlock()
	return c.kwokctl(ctx, "create cluster", "", "-c", cfgPath, "create", "cluster", "--runtime", "binary", "--kubeconfig", "", "--wait", "0s")
}

// kwokctl runs kwokctl with args on this cluster until it ends, for at most 2 minutes; hint
// goes into its error.
func (c *Cluster) kwokctl(ctx context.Context, what, hint string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	proc, err := startProcess("kwokctl "+what, c.Dir, filepath.Join(c.Dir, "kwokctl.log"), c.kwokEnv(),
		filepath.Join(c.p.binDir, "kwokctl"), append([]string{"--name", c.KwokName}, args...)...)
	if err != nil {
		return err
	}
	// kwokctl waits up to 2 minutes for an API server that may never come (say, its etcd died);
	// a dead component ends the wait at once.
	err = c.pollComponents(ctx, func(context.Context) (bool, error) { return proc.exited(), nil })
	if err == nil {
		err = proc.err
	}
	if err != nil {
		proc.stop(5 * time.Second)
		return fmt.Errorf("kwokctl %s%s: %w\n%s%s", what, hint, err, files.Tail(proc.output(), tailLines), c.componentLogs())
	}
	return nil
}

// resumeCluster starts the components of the cluster again on the state an earlier run left:
// kwokctl start cluster runs them from kwokctl's saved config (same flags, ports, certificates
// and kubeconfig) on the same etcd data, so every object is still there and kwok carries on
// with the pods where they are.
func (c *Cluster) resumeCluster(ctx context.Context) error {
	if err := c.killLeftovers(ctx); err != nil {
		return err
	}
	// Pid files of dead processes: kwokctl would take a recycled pid for its component.
	pidFiles, _ := filepath.Glob(filepath.Join(c.KwokDir, "pids", "*.pid"))
	for _, f := range append(pidFiles, filepath.Join(c.Dir, "adapter.pid")) {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove pid files of an earlier run: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(c.KwokDir, "pids"), 0o755); err != nil {
		return fmt.Errorf("resume cluster: %w", err)
	}
	if err := c.waitPortsFree(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.created = true
	c.mu.Unlock()
	// The lease times of the API server are to the microsecond, written by this machine's clock.
	c.resumedAt = time.Now().Truncate(time.Second)
	return c.kwokctl(ctx, "start cluster", fmt.Sprintf(" (to start it anew, losing the jobs on it, remove %s and %s)", c.Dir, c.KwokDir),
		"start", "cluster", "--wait", "0s")
}

func (c *Cluster) kwokEnv() []string {
	return []string{"KWOK_WORKDIR=" + c.p.kwokDir}
}

// freePorts picks n distinct free TCP ports not in taken, all at once so that none is picked
// twice (from the kernel's ephemeral range, so never 8080).
func freePorts(n int, taken map[int]bool) ([]int, error) {
	var ps []int
	for len(ps) < n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		if port := l.Addr().(*net.TCPAddr).Port; !taken[port] {
			ps = append(ps, port)
		}
	}
	return ps, nil
}

func (c *Cluster) connect() error {
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	c.rest, c.clientset = rc, cs
	return nil
}

// waitReady waits until the API server is ready, the fake nodes are Ready and untainted, and
// each namespace has its default service account (so Pods can be created there).
func (c *Cluster) waitReady(ctx context.Context) error {
	cs := c.clientset
	var last error
	err := c.pollComponents(ctx, func(ctx context.Context) (bool, error) {
		b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		last = fmt.Errorf("/readyz: %v %s", err, b)
		return err == nil && strings.TrimSpace(string(b)) == "ok", nil
	})
	if err != nil {
		return fmt.Errorf("wait for the API server: %w (last: %v)", err, last)
	}
	if c.resume {
		if err := c.takeOverLeases(ctx); err != nil {
			return err
		}
	}
	for _, name := range c.Nodes {
		if _, err := cs.CoreV1().Nodes().Create(ctx, c.node(name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	for _, ns := range c.p.opts.Namespaces {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	err = c.pollComponents(ctx, func(ctx context.Context) (bool, error) {
		for _, name := range c.Nodes {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				last = err
				return false, nil
			}
			if !nodeReady(n) {
				last = fmt.Errorf("node %s: not Ready or still tainted: %v %v", name, n.Status.Conditions, n.Spec.Taints)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for nodes: %w (last: %v)", err, last)
	}
	err = c.pollComponents(ctx, func(ctx context.Context) (bool, error) {
		for _, ns := range c.p.opts.Namespaces {
			if _, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				last = fmt.Errorf("namespace %s: service account default: %v", ns, err)
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for service accounts: %w (last: %v)", err, last)
	}
	return nil
}

// takeOverLeases hands the fake nodes of a resumed cluster to its new kwok at once: their Leases
// are still held by the kwok of the earlier run, which no longer renews them, and kwok manages
// a node (runs its pods' stages) only while it holds its Lease. Each lease not renewed since
// the resume began is deleted (unless renewed meanwhile: the delete is conditional), and the
// wait ends once the new kwok holds every one.
func (c *Cluster) takeOverLeases(ctx context.Context) error {
	leases := c.clientset.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	var last error
	err := c.pollComponents(ctx, func(ctx context.Context) (bool, error) {
		for _, name := range c.Nodes {
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				last = fmt.Errorf("lease of node %s: not taken yet", name)
				return false, nil
			}
			if err != nil {
				last = fmt.Errorf("lease of node %s: %w", name, err)
				return false, nil
			}
			if l.Spec.RenewTime != nil && !l.Spec.RenewTime.Time.Before(c.resumedAt) {
				continue // renewed by this run's kwok
			}
			last = fmt.Errorf("lease of node %s: held by the kwok of an earlier run", name)
			rv := l.ResourceVersion
			err = leases.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				last = fmt.Errorf("delete the lease of node %s: %w", name, err)
			}
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for kwok to take over the nodes: %w (last: %v)", err, last)
	}
	return nil
}

// poll calls cond every 100ms until it is done, fails, or ctx ends.
func poll(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond)
}

// pollComponents is poll that also fails as soon as a component of the cluster has exited
// (say, a port taken between our choice and its start), rather than at the deadline.
func (c *Cluster) pollComponents(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	return poll(ctx, func(ctx context.Context) (bool, error) {
		files, _ := filepath.Glob(filepath.Join(c.KwokDir, "pids", "*.pid"))
		for _, f := range files {
			if pids := readPidFiles(f); len(pids) == 1 && !alive(pids[0]) {
				name := strings.TrimSuffix(filepath.Base(f), ".pid")
				return false, fmt.Errorf("%s exited (its log is below)", name)
			}
		}
		return cond(ctx)
	})
}

func nodeReady(n *corev1.Node) bool {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			return false
		}
	}
	return ready
}

// node is a fake node as kwok expects it: kwok keeps the status fields given here and fills in
// the conditions. Its address and port let the API server reach kwok for pods/log.
func (c *Cluster) node(name string) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/arch":     c.KubeArch,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/hostname": name,
				"type":                   "kwok",
			},
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		Status: corev1.NodeStatus{
			Allocatable: res,
			Capacity:    res,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
				{Type: corev1.NodeHostName, Address: name},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(c.ports.kwok)}},
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    c.KubeArch,
				OperatingSystem: "linux",
			},
		},
	}
}

// stop stops the adapter and the cluster; survivors of kwokctl delete (or stop) are killed. A
// persistent platform's cluster that has been ready is stopped, not deleted: the next Start
// resumes it.
func (c *Cluster) stop() {
	c.stopAdapter()
	c.mu.Lock()
	created, keep := c.created, c.keep
	c.created = false
	c.mu.Unlock()
	if !created {
		return
	}
	pids := readPidFiles(filepath.Join(c.KwokDir, "pids", "*.pid"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c.p.opts.Persistent && keep {
		if err := runProcess(ctx, "kwokctl stop cluster", c.Dir, filepath.Join(c.Dir, "kwokctl.log"), c.kwokEnv(),
			filepath.Join(c.p.binDir, "kwokctl"), "--name", c.KwokName, "stop", "cluster"); err != nil {
			c.logf("%v", err)
		}
		c.killSurvivors(pids)
		return
	}
	if err := runProcess(ctx, "kwokctl delete cluster", c.Dir, filepath.Join(c.Dir, "kwokctl.log"), c.kwokEnv(),
		filepath.Join(c.p.binDir, "kwokctl"), "--name", c.KwokName, "delete", "cluster",
		// It edits this kubeconfig (default ~/.kube/config) and refuses "": give it one of ours.
		"--kubeconfig", filepath.Join(c.Dir, "unused-kubeconfig.yaml")); err != nil {
		c.logf("%v", err)
	}
	c.killSurvivors(pids)
}

// componentLogs returns the tails of the component logs, for errors.
func (c *Cluster) componentLogs() string {
	var sb strings.Builder
	for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller"} {
		p := filepath.Join(c.KwokDir, "logs", name+".log")
		if _, err := os.Stat(p); err == nil {
			sb.WriteString(fileTail(p, 10))
		}
	}
	return sb.String()
}

// defaultContainerLog is the initial LogsFile: a few lines in CRI format.
func defaultContainerLog() string {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var sb strings.Builder
	for i, line := range []string{"step started", "working", "step done"} {
		fmt.Fprintf(&sb, "%s stdout F %s\n", t.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), line)
	}
	return sb.String()
}

// killSurvivors kills the components of pids that kwokctl left running and waits until they
// are gone, so that nothing of the cluster runs once Stop returns.
func (c *Cluster) killSurvivors(pids []int) {
	if err := killDirProcesses(context.Background(), map[string][]int{c.KwokDir: pids}); err != nil {
		c.logf("%v", err)
	}
}
