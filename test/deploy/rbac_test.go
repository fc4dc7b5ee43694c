package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// rbacFunctions are the functions that talk to build clusters, each as its own ServiceAccount.
var rbacFunctions = []string{"submit", "status-sync", "query", "log-archive"}

// TestRBAC proves the Roles of config/build-cluster/ (equal to config/201-rbac.yaml, which
// TestConsistency checks) are enough, by running jobs through them: two local clusters get
// config/build-cluster/ applied for real; hack/build-cluster-kubeconfigs.sh writes one kubeconfig
// per function from the ServiceAccount tokens; each function runs as its own process with only
// its kubeconfigs (the way each Knative Service mounts its own Secret); the ApiServerSource
// adapter runs with the environment of config/remote-source/ and the token of
// omni-apiserversource; the local router delivers by config/'s Triggers. A job on each arch must
// succeed with its logs archived and its pod finalizer removed, a held job must cancel, a resync
// must pass — and no function may log a Forbidden answer.
func TestRBAC(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs the local clusters (not in -short mode)")
	}
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	began := time.Now()
	step := func(format string, args ...any) {
		progress(t, "%s (%s)", fmt.Sprintf(format, args...), time.Since(began).Round(time.Millisecond))
	}

	// Binaries first (the Go build cache makes this quick after the first run).
	binDir := t.TempDir()
	command(t, ctx, root, nil, "go", "build", "-o", binDir+"/", "./functions/submit", "./functions/status-sync",
		"./functions/query", "./functions/log-archive", "./cmd/omni")
	step("functions built")

	p := platform.StartForTest(t, platform.Options{Namespaces: []string{"omni-jobs"}})
	tools, err := platform.Tools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	step("clusters up")

	work := t.TempDir()
	kubeconfigs := map[string]map[string]string{} // identity → cluster → kubeconfig path
	for _, c := range p.Clusters() {
		env := []string{"KUBECONFIG=" + c.Kubeconfig, "PATH=" + tools + string(os.PathListSeparator) + os.Getenv("PATH")}
		command(t, ctx, root, env, filepath.Join(tools, "kubectl"), "apply", "-f", "config/build-cluster/")
		waitTokens(t, ctx, c)
		out := command(t, ctx, root, append(env, "DRY_RUN=1"), "bash", "hack/build-cluster-kubeconfigs.sh",
			currentContext(t, c.Kubeconfig), c.Name, c.RESTConfig().Host)
		for id, kc := range parseKubeconfigSecrets(t, out, c.Name) {
			path := filepath.Join(work, "kubeconfigs", id, c.Name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, kc, 0o600); err != nil {
				t.Fatal(err)
			}
			if kubeconfigs[id] == nil {
				kubeconfigs[id] = map[string]string{}
			}
			kubeconfigs[id][c.Name] = path
		}
	}
	for _, id := range append(rbacFunctions, "apiserversource") {
		if len(kubeconfigs[id]) != len(p.Clusters()) {
			t.Fatalf("hack/build-cluster-kubeconfigs.sh wrote kubeconfigs of %s for %v, want every cluster", id, kubeconfigs[id])
		}
	}
	step("config/build-cluster/ applied, kubeconfigs written by hack/build-cluster-kubeconfigs.sh")

	// The store: a fresh keyspace of the local Cassandra, migrated again by the schema Job's
	// binary (idempotent), as a deploy does.
	db := cassandratest.StoreURL(cassandratest.Keyspace(t))
	command(t, ctx, work, nil, filepath.Join(binDir, "omni"), "db", "init", "-store", db, "-replication", "1")
	users := writeAPIUsers(t, work)

	// The Broker's address first (the functions' K_SINK), then the functions, each with its own
	// cluster configs naming its own kubeconfigs, then the router with their addresses: the local
	// router with config/'s Triggers, delivering to the processes.
	broker := httptest.NewUnstartedServer(nil)
	t.Cleanup(broker.Close)
	sink := "http://" + broker.Listener.Addr().String() + "/omni/default"
	addrs := map[string]string{}
	logs := map[string]string{}
	for _, fn := range rbacFunctions {
		dir := filepath.Join(work, "clusters", fn)
		writeClusterConfigs(t, dir, p, kubeconfigs[fn])
		logs[fn] = filepath.Join(work, fn+".log")
		addrs[fn] = startFunction(t, filepath.Join(binDir, fn), logs[fn], []string{
			"OMNI_STORE=" + db,
			"OMNI_CLUSTERS_DIR=" + dir,
			"OMNI_HTPASSWD=" + users[0], "OMNI_USERS=" + users[1],
			"K_SINK=" + sink,
			"OMNI_PAGE_TOKEN_KEY=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)),
			"OMNI_RESYNC_GRACE=1s",
		})
	}
	deadLetters := &eventLog{}
	sinkSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(sinkSrv.Close)
	dlSrv := httptest.NewServer(deadLetters)
	t.Cleanup(dlSrv.Close)
	cfg, err := router.Load(config.FS)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := router.New(cfg, func(ref router.Ref) (router.Target, error) {
		raw := sinkSrv.URL // notify: not under test here
		if a, ok := addrs[ref.Name]; ok {
			raw = "http://" + a
		} else if ref.Name == "omni-dead-letter" {
			raw = dlSrv.URL
		}
		u, err := url.Parse(raw)
		return router.Target{URL: u}, err
	}, router.WithBackoffScale(0.05))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	broker.Config.Handler = rt
	broker.Start()
	step("functions ready")

	// The event source of each cluster: the adapter with config/remote-source/'s environment.
	for _, c := range p.Clusters() {
		startAdapter(t, tools, c, kubeconfigs["apiserversource"][c.Name], sink, work)
	}
	step("adapters watching")

	api := &apiClient{t: t, submit: "http://" + addrs["submit"], query: "http://" + addrs["query"]}
	for _, c := range p.Clusters() {
		id := api.submitJob(ctx, c.Arch, nil)
		api.waitStatus(ctx, id, "succeeded")
		waitNoFinalizer(t, ctx, c, id)
		api.checkLogs(ctx, id, "build-rpm")
	}
	step("a job on each arch succeeded, logs archived, finalizers removed")

	// Cancel: a held job, deleted while running, ends cancelled and its objects go.
	c := p.Clusters()[0]
	id := api.submitJob(ctx, c.Arch, map[string]string{platform.AnnotationHoldStep: "build-rpm"})
	api.waitStatus(ctx, id, "running")
	api.cancel(ctx, id)
	api.waitStatus(ctx, id, "cancelled")
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		js, err := c.Clientset().BatchV1().Jobs("omni-jobs").List(ctx, metav1.ListOptions{LabelSelector: names.LabelJobID + "=" + id})
		return err == nil && len(js.Items) == 0, nil
	})
	if err != nil {
		t.Errorf("cancelled job %s: its Kubernetes Job is still there: %v", id, err)
	}
	waitNoFinalizer(t, ctx, c, id)
	step("a running job cancelled")

	// The resync lists every unfinished job's objects as status-sync.
	if err := rt.Ping(ctx, "omni", "resync"); err != nil {
		t.Errorf("resync: %v", err)
	}
	step("resync passed")

	for _, fn := range rbacFunctions {
		b, _ := os.ReadFile(logs[fn])
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("%s was refused by a cluster: %s", fn, line)
			}
		}
	}
	for _, e := range deadLetters.all() {
		t.Errorf("dead-lettered: %s", e)
	}
}

// waitTokens waits until the token controller has filled the token Secrets of
// config/build-cluster/.
func waitTokens(t *testing.T, ctx context.Context, c *platform.Cluster) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		ss, err := c.Clientset().CoreV1().Secrets("omni-jobs").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		n := 0
		for _, s := range ss.Items {
			if s.Type == corev1.SecretTypeServiceAccountToken && len(s.Data["token"]) > 0 {
				n++
			}
		}
		return n >= len(rbacFunctions)+1, nil
	})
	if err != nil {
		t.Fatalf("cluster %s: the ServiceAccount token Secrets of config/build-cluster/ were not filled: %v", c.Name, err)
	}
}

func currentContext(t *testing.T, kubeconfig string) string {
	t.Helper()
	b, err := os.ReadFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var kc struct {
		CurrentContext string `json:"current-context"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil || kc.CurrentContext == "" {
		t.Fatalf("%s: no current context (%v)", kubeconfig, err)
	}
	return kc.CurrentContext
}

// parseKubeconfigSecrets returns, by identity, the kubeconfig under key instance of each Secret
// omni-kubeconfigs-<identity> the script printed.
func parseKubeconfigSecrets(t *testing.T, out []byte, instance string) map[string][]byte {
	t.Helper()
	res := map[string][]byte{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" || strings.TrimSpace(doc) == "---" {
			continue
		}
		var s corev1.Secret
		if err := yaml.Unmarshal([]byte(doc), &s); err != nil {
			t.Fatalf("script output: %v\n%s", err, doc)
		}
		id, ok := strings.CutPrefix(s.Name, "omni-kubeconfigs-")
		if !ok || s.Namespace != "omni" || len(s.Data[instance]) == 0 {
			t.Fatalf("script output: unexpected Secret %s/%s with keys %v", s.Namespace, s.Name, sortedKeys(s.Data))
		}
		res[id] = s.Data[instance]
	}
	return res
}

// writeAPIUsers writes an htpasswd and users file with one admin, and returns their paths.
func writeAPIUsers(t *testing.T, dir string) [2]string {
	t.Helper()
	line, err := auth.HashPassword("rbac", "rbac-pw")
	if err != nil {
		t.Fatal(err)
	}
	p := [2]string{filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml")}
	if err := os.WriteFile(p[0], []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p[1], []byte("users:\n  rbac: {role: admin, services: [\"*\"]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeClusterConfigs writes x86_64.yaml and aarch64.yaml naming each cluster of p, with the
// given kubeconfigs, in the job namespace of config/build-cluster/.
func writeClusterConfigs(t *testing.T, dir string, p *platform.Platform, kubeconfigs map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	byArch := map[string][]kube.Instance{}
	for _, c := range p.Clusters() {
		byArch[c.Arch] = append(byArch[c.Arch], kube.Instance{Name: c.Name, Kubeconfig: kubeconfigs[c.Name], Namespace: "omni-jobs"})
	}
	for arch, ins := range byArch {
		b, err := yaml.Marshal(kube.ArchConfig{Arch: arch, Instances: ins})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, arch+".yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// startFunction runs a function binary on a free loopback port, waits for its /readyz and
// returns its address. A port taken between the choice and the bind is chosen again.
func startFunction(t *testing.T, exe, logPath string, env []string) string {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := "127.0.0.1:" + fmt.Sprint(freePort(t))
		err := tryFunction(t, exe, addr, logPath, env)
		if err == nil {
			return addr
		}
		b, _ := os.ReadFile(logPath)
		if attempt < 3 && bytes.Contains(b, []byte("address already in use")) {
			continue
		}
		t.Fatalf("%s not ready: %v\n%s", filepath.Base(exe), err, tail(string(b), 30))
	}
}

func tryFunction(t *testing.T, exe, addr, logPath string, env []string) error {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Dir = filepath.Dir(logPath)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir, "PORT=" + port, "OMNI_LOG_LEVEL=debug"}, env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("exited")
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		stop()
		return err
	}
	t.Cleanup(stop)
	return nil
}

// startAdapter runs the ApiServerSource receive adapter for cluster c with the environment of
// config/remote-source/arm-build-1.yaml, pointed at c, its kubeconfig and sink, and waits until it
// watches (its log says so).
func startAdapter(t *testing.T, tools string, c *platform.Cluster, kubeconfig, sink, work string) {
	t.Helper()
	env := remoteSourceEnv(t)
	env["KUBECONFIG"] = kubeconfig
	env["K_SINK"] = sink
	env["K_CE_OVERRIDES"] = fmt.Sprintf(`{"extensions":{"cluster":%q}}`, c.Name)
	env["NAME"] = "adapter-" + strings.ReplaceAll(c.Name, "_", "-")
	env["K_KLOG_VERBOSITY"] = "2" // logs "Caches populated" once a watch runs
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	logPath := filepath.Join(work, "adapter-"+c.Name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(tools, "apiserver_receive_adapter"))
	cmd.Dir = work
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + work}, envList...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// The adapter lists before it watches; a watch it may not make ends it with "forbidden".
	err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("adapter exited")
		default:
		}
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(bytes.ToLower(b), []byte("forbidden")) {
			return false, fmt.Errorf("adapter refused by the API server")
		}
		return bytes.Count(b, []byte("Caches populated")) >= 2 || bytes.Count(b, []byte("caches populated")) >= 2, nil
	})
	if err != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("adapter of %s: %v\n%s", c.Name, err, tail(string(b), 30))
	}
}

// remoteSourceEnv is the environment of the adapter container in config/remote-source/.
func remoteSourceEnv(t *testing.T) map[string]string {
	t.Helper()
	for _, m := range loadManifests(t, "config/remote-source") {
		if m.Kind != "Deployment" {
			continue
		}
		var dep struct {
			Spec struct {
				Template struct {
					Spec corev1.PodSpec `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(m.Raw, &dep); err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		return env
	}
	t.Fatal("no Deployment in config/remote-source/")
	return nil
}

// waitNoFinalizer waits until no pod of job id carries log-archive's finalizer.
func waitNoFinalizer(t *testing.T, ctx context.Context, c *platform.Cluster, id string) {
	t.Helper()
	var last []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Clientset().CoreV1().Pods("omni-jobs").List(ctx, metav1.ListOptions{LabelSelector: names.LabelJobID + "=" + id})
		if err != nil {
			return false, nil
		}
		last = nil
		for _, p := range pods.Items {
			for _, f := range p.Finalizers {
				if f == names.PodFinalizer {
					last = append(last, p.Name)
				}
			}
		}
		return len(last) == 0, nil
	})
	if err != nil {
		t.Errorf("job %s: pods %v still carry %s: %v", id, last, names.PodFinalizer, err)
	}
}

// apiClient calls the API of the separately running functions.
type apiClient struct {
	t             *testing.T
	submit, query string
}

func (a *apiClient) do(ctx context.Context, method, url string, body any) (int, []byte) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		a.t.Fatal(err)
	}
	req.SetBasicAuth("rbac", "rbac-pw")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a *apiClient) submitJob(ctx context.Context, arch string, labels map[string]string) string {
	a.t.Helper()
	code, b := a.do(ctx, "POST", a.submit+"/v1/jobs", map[string]any{
		"service": "rbac", "task": "buildrpm", "arch": arch, "domain": "deploy",
		"parameters": map[string]any{"srpmUrl": "https://repo.example.org/src/zlib-1.3.1-1.src.rpm"},
		"labels":     labels,
	})
	if code != http.StatusCreated {
		a.t.Fatalf("submit on %s: %d %s", arch, code, b)
	}
	var j struct{ ID string }
	_ = json.Unmarshal(b, &j)
	return j.ID
}

func (a *apiClient) waitStatus(ctx context.Context, id, want string) {
	a.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		code, b := a.do(ctx, "GET", a.query+"/v1/jobs/"+id, nil)
		var j struct{ Status string }
		_ = json.Unmarshal(b, &j)
		last = fmt.Sprintf("%d %s", code, b)
		return j.Status == want, nil
	})
	if err != nil {
		a.t.Fatalf("job %s: not %s: %v (last answer %s)", id, want, err, last)
	}
}

func (a *apiClient) cancel(ctx context.Context, id string) {
	a.t.Helper()
	code, b := a.do(ctx, "DELETE", a.submit+"/v1/jobs/"+id, nil)
	if code/100 != 2 {
		a.t.Fatalf("cancel %s: %d %s", id, code, b)
	}
}

// checkLogs waits until the archived log of a step holds the text the simulated container
// printed (query reads the archive; log-archive wrote it as its ServiceAccount).
func (a *apiClient) checkLogs(ctx context.Context, id, step string) {
	a.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		code, b := a.do(ctx, "GET", a.query+"/v1/jobs/"+id+"/logs?step="+step, nil)
		last = fmt.Sprintf("%d %s", code, b)
		return code == http.StatusOK && bytes.Contains(b, []byte("step done")), nil
	})
	if err != nil {
		a.t.Errorf("job %s step %s: archived log not served: %v (last answer %.300s)", id, step, err, last)
	}
}

// eventLog records the CloudEvents posted to it.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
	l.mu.Lock()
	if err != nil {
		l.events = append(l.events, "not an event: "+err.Error())
	} else {
		l.events = append(l.events, fmt.Sprintf("%s %s %v", e.Type(), e.Subject(), e.Extensions()))
	}
	l.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}
