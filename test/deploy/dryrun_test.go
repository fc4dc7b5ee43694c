package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/local/platform"
)

// Versions of the CRDs the manifests are checked against: the Knative releases of go.mod's
// knative.dev modules (DESIGN §2) and a Gateway API release with HTTPRoute timeouts.
const (
	servingModule    = "knative.dev/serving@v0.51.0"
	eventingModule   = "knative.dev/eventing@v0.50.0"
	gatewayAPIModule = "sigs.k8s.io/gateway-api@v1.4.1"
)

// crdFiles lists, per module, the CRD manifests to install (globs inside the module).
var crdFiles = map[string][]string{
	servingModule:    {"config/core/300-resources/*.yaml"},
	eventingModule:   {"config/core/resources/*.yaml"},
	gatewayAPIModule: {"config/crd/standard/*.yaml"},
}

// TestServerDryRun installs the Knative Serving and Eventing CRDs and the Gateway API CRDs on a
// local cluster (a real kube-apiserver) and has it validate every manifest an operator applies:
// config/ (what `ko apply -f config/` sends), config/build-cluster/ and its knative/ folder (on a
// build cluster), config/remote-source/ — with `kubectl apply --dry-run=server`, strict field
// validation. The Knative webhooks do not run here: this is the schema of every object, not
// Knative's own checks (TestConsistency covers the ones that matter to us).
func TestServerDryRun(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("needs a local cluster (not in -short mode)")
	}
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()

	crds := downloadCRDs(t, ctx)
	progress(t, "%d CRD files from the module cache (%s)", len(crds), time.Since(began).Round(time.Millisecond))

	p := platform.StartForTest(t, platform.Options{
		Clusters: []platform.ClusterSpec{{Name: "knative", Arch: "x86_64"}},
		// Namespaces the manifests expect to exist already: Knative's and the Gateway's.
		Namespaces: []string{"knative-eventing", "knative-serving", "istio-system"},
	})
	bin, err := platform.Tools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := p.Cluster("knative")
	kubectl := func(args ...string) []byte {
		t.Helper()
		return command(t, ctx, root, []string{"KUBECONFIG=" + c.Kubeconfig}, filepath.Join(bin, "kubectl"), args...)
	}
	progress(t, "cluster up (%s)", time.Since(began).Round(time.Millisecond))

	args := []string{"apply", "--server-side", "--field-manager=omni-test"}
	for _, f := range crds {
		args = append(args, "-f", f)
	}
	kubectl(args...)
	kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd", "--all")
	progress(t, "CRDs established (%s)", time.Since(began).Round(time.Millisecond))

	// The namespaces of config/ for real: a dry-run of a namespace creates nothing, and the
	// objects in it would be refused.
	kubectl("apply", "-f", "config/100-namespace.yaml")

	for _, dir := range []string{"config", "config/build-cluster", "config/build-cluster/knative", "config/remote-source"} {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			out, err := commandErr(ctx, root, []string{"KUBECONFIG=" + c.Kubeconfig}, filepath.Join(bin, "kubectl"),
				"apply", "--dry-run=server", "--validate=strict", "-o", "name", "-f", dir)
			if err != nil {
				t.Fatal(err)
			}
			// Every document was checked, none skipped.
			want := len(loadManifests(t, dir))
			got := len(strings.Fields(string(out)))
			if got != want {
				t.Errorf("kubectl applied %d objects of %s, the folder has %d:\n%s", got, dir, want, out)
			}
			t.Logf("%s: %d objects accepted by the API server", dir, got)
		})
	}
	// The check is not blind: a misspelt field in each kind we use is refused.
	for _, c := range canaries {
		t.Run("refuses_"+c.name, func(t *testing.T) {
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "kubectl"), "apply", "--dry-run=server", "--validate=strict", "-f", "-")
			cmd.Env = append(os.Environ(), "KUBECONFIG="+p.Cluster("knative").Kubeconfig)
			cmd.Stdin = strings.NewReader(c.doc)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), c.field) {
				t.Errorf("a %s with the unknown field %s was not refused (err %v):\n%s", c.name, c.field, err, out)
			}
		})
	}
	progress(t, "done in %s", time.Since(began).Round(time.Millisecond))
}

// canaries are manifests with one misspelt field each, which the API server must refuse. (The
// Trigger, Broker and PingSource CRDs keep unknown fields in their spec; those three kinds are
// decoded strictly and validated by Knative's own code in local/router, whose Load of config/
// TestConsistency runs.)
var canaries = []struct{ name, field, doc string }{
	{"knative-service", "containerConcurency", `
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: canary, namespace: omni}
spec:
  template:
    spec:
      containerConcurency: 1
      containers: [{image: example.com/x}]
`},
	{"knative-service-probe", "readinesProbe", `
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: canary, namespace: omni}
spec:
  template:
    spec:
      containers: [{image: example.com/x, readinesProbe: {httpGet: {path: /readyz}}}]
`},
	{"apiserversource", "labelSelector", `
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {name: canary, namespace: omni}
spec:
  mode: Resource
  resources: [{apiVersion: v1, kind: Pod, labelSelector: {}}]
  sink: {uri: http://example.com}
`},
	{"httproute", "backendRef", `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary, namespace: omni}
spec:
  rules: [{backendRef: [{name: x, port: 80}]}]
`},
	// The EventPolicy CRD (eventpolicy.yaml of Knative Eventing's config/core/resources) is
	// installed and structural: a misspelt sender is refused, so config/'s policies are checked.
	{"eventpolicy", "form", `
apiVersion: eventing.knative.dev/v1alpha1
kind: EventPolicy
metadata: {name: canary, namespace: omni}
spec:
  form: [{sub: "system:serviceaccount:omni:*"}]
`},
	{"networkpolicy", "egres", `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: canary, namespace: omni}
spec:
  podSelector: {}
  egres: []
`},
}

// downloadCRDs fetches the modules of crdFiles into the module cache (go mod download, outside
// any module so that go.mod stays as it is) and returns the CRD files.
func downloadCRDs(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var mods []string
	for m := range crdFiles {
		mods = append(mods, m)
	}
	out := command(t, ctx, t.TempDir(), []string{"GO111MODULE=on", "GOFLAGS=-mod=mod"}, "go", append([]string{"mod", "download", "-json"}, mods...)...)
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var files []string
	for dec.More() {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Error != "" {
			t.Fatalf("go mod download %s@%s: %s", m.Path, m.Version, m.Error)
		}
		for _, g := range crdFiles[m.Path+"@"+m.Version] {
			fs, _ := filepath.Glob(filepath.Join(m.Dir, g))
			if len(fs) == 0 {
				t.Fatalf("%s@%s has no %s", m.Path, m.Version, g)
			}
			for _, f := range fs {
				if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "CustomResourceDefinition") {
					files = append(files, f)
				}
			}
		}
	}
	return files
}
