package deploy

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/eventing/pkg/eventfilter"
	"knative.dev/eventing/pkg/eventfilter/attributes"
	"knative.dev/eventing/pkg/eventfilter/subscriptionsapi"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/config"
	"github.com/omnibuildplatform/omni-orchestrator/local/router"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// knService is a Knative serving.knative.dev/v1 Service as far as config/ uses it (decoded
// strictly, so a field this test does not know about fails it rather than passing unseen).
type knService struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       struct {
		Template struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     struct {
				corev1.PodSpec
				ContainerConcurrency *int64 `json:"containerConcurrency,omitempty"`
				TimeoutSeconds       *int64 `json:"timeoutSeconds,omitempty"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// deployment is what the tests know of config/: its manifests decoded.
type deployment struct {
	all             []manifest
	services        map[string]*knService // by name
	configMaps      map[string]map[string]string
	namespaces      map[string]map[string]string // labels by name
	serviceAccounts map[string]bool              // namespace/name
	roles           map[string]rbacv1.Role       // namespace/name
	roleBindings    []rbacv1.RoleBinding
	sinkBindings    []sourcesv1.SinkBinding
	apiServerSrcs   []sourcesv1.ApiServerSource
}

func loadDeployment(t *testing.T, dir string) *deployment {
	t.Helper()
	d := &deployment{
		all:             loadManifests(t, dir),
		services:        map[string]*knService{},
		configMaps:      map[string]map[string]string{},
		namespaces:      map[string]map[string]string{},
		serviceAccounts: map[string]bool{},
		roles:           map[string]rbacv1.Role{},
	}
	for _, m := range d.all {
		switch m.APIVersion + " " + m.Kind {
		case "serving.knative.dev/v1 Service":
			var s knService
			m.decode(t, &s)
			d.services[s.Metadata.Name] = &s
		case "v1 ConfigMap":
			var cm corev1.ConfigMap
			m.decode(t, &cm)
			d.configMaps[cm.Name] = cm.Data
		case "v1 Namespace":
			d.namespaces[m.Metadata.Name] = m.Metadata.Labels
		case "v1 ServiceAccount":
			d.serviceAccounts[m.Metadata.Namespace+"/"+m.Metadata.Name] = true
		case "rbac.authorization.k8s.io/v1 Role":
			var r rbacv1.Role
			m.decode(t, &r)
			d.roles[r.Namespace+"/"+r.Name] = r
		case "rbac.authorization.k8s.io/v1 RoleBinding":
			var rb rbacv1.RoleBinding
			m.decode(t, &rb)
			d.roleBindings = append(d.roleBindings, rb)
		case "sources.knative.dev/v1 SinkBinding":
			var sb sourcesv1.SinkBinding
			m.decode(t, &sb)
			d.sinkBindings = append(d.sinkBindings, sb)
		case "sources.knative.dev/v1 ApiServerSource":
			var s sourcesv1.ApiServerSource
			m.decode(t, &s)
			d.apiServerSrcs = append(d.apiServerSrcs, s)
		}
	}
	return d
}

// TestConsistency checks that config/ and the code agree; each subtest names one promise.
func TestConsistency(t *testing.T) {
	t.Parallel()
	d := loadDeployment(t, "config")
	fns := functionNames(t)
	facts := map[string]codeFacts{}
	for _, fn := range fns {
		facts[fn] = scanBinary(t, "./functions/"+fn)
	}

	t.Run("generated ConfigMaps are up to date", func(t *testing.T) {
		root := repoRoot(t)
		if _, err := commandErr(context.Background(), root, nil, "go", "run", "./hack/genconfig", "-check"); err != nil {
			t.Error(err)
		}
	})

	t.Run("the local router loads config/", func(t *testing.T) {
		if _, err := router.Load(config.FS); err != nil {
			t.Errorf("local/router cannot load the embedded config/ (what make run and the e2e tests deliver by): %v", err)
		}
	})

	t.Run("every function has a Knative Service", func(t *testing.T) {
		for _, fn := range fns {
			s := d.services[fn]
			if s == nil {
				t.Errorf("functions/%s has no Knative Service named %s in config/", fn, fn)
				continue
			}
			checkFunctionService(t, fn, s, d)
		}
		for name := range d.services {
			if !slices.Contains(fns, name) && name != "omni-dead-letter" {
				t.Errorf("Service %s in config/ is no function of functions/", name)
			}
		}
	})

	t.Run("every Trigger's broker, subscriber and dead-letter sink exist", func(t *testing.T) {
		cfg, err := router.Load(config.FS)
		if err != nil {
			t.Fatal(err)
		}
		brokers := map[string]bool{}
		for _, b := range cfg.Brokers {
			brokers[b.Namespace+"/"+b.Name] = true
			if b.Spec.Delivery != nil && b.Spec.Delivery.DeadLetterSink != nil {
				checkRef(t, d, "Broker "+b.Name+" dead-letter sink", b.Namespace, b.Spec.Delivery.DeadLetterSink.Ref)
			}
		}
		for _, tr := range cfg.Triggers {
			if !brokers[tr.Namespace+"/"+tr.Spec.Broker] {
				t.Errorf("Trigger %s: no Broker %s/%s in config/", tr.Name, tr.Namespace, tr.Spec.Broker)
			}
			checkRef(t, d, "Trigger "+tr.Name+" subscriber", tr.Namespace, tr.Spec.Subscriber.Ref)
			if tr.Spec.Delivery != nil && tr.Spec.Delivery.DeadLetterSink != nil {
				checkRef(t, d, "Trigger "+tr.Name+" dead-letter sink", tr.Namespace, tr.Spec.Delivery.DeadLetterSink.Ref)
			}
		}
		for _, p := range cfg.PingSources {
			checkRef(t, d, "PingSource "+p.Name+" sink", p.Namespace, p.Spec.Sink.Ref)
		}
		for _, s := range d.apiServerSrcs {
			checkBrokerRef(t, brokers, "ApiServerSource "+s.Name, s.Namespace, s.Spec.Sink.Ref)
		}
		for _, sb := range d.sinkBindings {
			checkBrokerRef(t, brokers, "SinkBinding "+sb.Name, sb.Namespace, sb.Spec.Sink.Ref)
		}
	})

	t.Run("every event type the code emits is consumed or documented as external", func(t *testing.T) {
		checkEventTypes(t)
	})

	t.Run("every setting a function reads is set or documented", func(t *testing.T) {
		documented := documentedVariables(t)
		dbJob := scanBinary(t, "./cmd/omni")
		readByAny := map[string]bool{}
		for name := range dbJob.Env {
			readByAny[name] = true
		}
		for _, fn := range fns {
			s := d.services[fn]
			if s == nil {
				continue
			}
			set := serviceEnv(t, d, s)
			for _, name := range sortedKeys(facts[fn].Env) {
				readByAny[name] = true
				if set[name] == "" && !documented[name] {
					t.Errorf("%s reads %s (%s): set it in its Service in config/ or document its default in docs/configuration.md",
						fn, name, facts[fn].Env[name])
				}
			}
			// The other way round: a variable set explicitly that nothing reads is a typo.
			for _, e := range s.Spec.Template.Spec.Containers[0].Env {
				if _, read := facts[fn].Env[e.Name]; !read {
					t.Errorf("Service %s sets %s, which functions/%s never reads", fn, e.Name, fn)
				}
			}
			if facts[fn].Emits && set["K_SINK"] == "" {
				t.Errorf("%s sends events itself but no SinkBinding gives its Service K_SINK", fn)
			}
		}
		// Every key of a ConfigMap a function takes whole (envFrom) is read by that function.
		for _, fn := range fns {
			s := d.services[fn]
			if s == nil {
				continue
			}
			for _, ef := range s.Spec.Template.Spec.Containers[0].EnvFrom {
				if ef.ConfigMapRef == nil {
					continue
				}
				for _, key := range sortedKeys(d.configMaps[ef.ConfigMapRef.Name]) {
					if _, read := facts[fn].Env[key]; !read {
						t.Errorf("Service %s takes ConfigMap %s, whose %s functions/%s never reads", fn, ef.ConfigMapRef.Name, key, fn)
					}
				}
			}
		}
		for _, cm := range []string{"omni-config", "omni-store"} {
			for _, key := range sortedKeys(d.configMaps[cm]) {
				if !readByAny[key] {
					t.Errorf("ConfigMap %s sets %s, which no function and not `omni db` reads", cm, key)
				}
			}
		}
	})

	t.Run("every file a setting names is mounted", func(t *testing.T) {
		for _, fn := range fns {
			if s := d.services[fn]; s != nil {
				checkMountedPaths(t, fn, s, d)
			}
		}
	})

	t.Run("every engine instance has credentials and an event source", func(t *testing.T) {
		checkClusters(t, d, fns, facts)
	})

	t.Run("RBAC: every ServiceAccount exists and the build-cluster Roles equal the local ones", func(t *testing.T) {
		for _, s := range d.services {
			sa := s.Spec.Template.Spec.ServiceAccountName
			if sa != "" && !d.serviceAccounts[s.Metadata.Namespace+"/"+sa] {
				t.Errorf("Service %s runs as ServiceAccount %s, which config/ does not create", s.Metadata.Name, sa)
			}
		}
		for _, rb := range d.roleBindings {
			if _, ok := d.roles[rb.Namespace+"/"+rb.RoleRef.Name]; !ok || rb.RoleRef.Kind != "Role" {
				t.Errorf("RoleBinding %s/%s: no Role %s in config/", rb.Namespace, rb.Name, rb.RoleRef.Name)
			}
			for _, sub := range rb.Subjects {
				if sub.Kind == "ServiceAccount" && !d.serviceAccounts[sub.Namespace+"/"+sub.Name] {
					t.Errorf("RoleBinding %s/%s binds ServiceAccount %s/%s, which config/ does not create", rb.Namespace, rb.Name, sub.Namespace, sub.Name)
				}
			}
		}
		remote := loadDeployment(t, "config/build-cluster")
		rolesByName := func(rs map[string]rbacv1.Role) map[string][]rbacv1.PolicyRule {
			out := map[string][]rbacv1.PolicyRule{}
			for _, r := range rs {
				out[r.Name] = r.Rules
			}
			return out
		}
		if diff := cmp.Diff(rolesByName(d.roles), rolesByName(remote.roles)); diff != "" {
			t.Errorf("Roles of config/build-cluster/ differ from config/201-rbac.yaml (-local +build cluster):\n%s", diff)
		}
		for _, rb := range remote.roleBindings {
			for _, sub := range rb.Subjects {
				if !remote.serviceAccounts[sub.Namespace+"/"+sub.Name] {
					t.Errorf("build cluster: RoleBinding %s binds %s/%s, which config/build-cluster/ does not create", rb.Name, sub.Namespace, sub.Name)
				}
			}
		}
	})
}

// checkFunctionService checks what every function's Service must have.
func checkFunctionService(t *testing.T, fn string, s *knService, d *deployment) {
	t.Helper()
	tmpl := s.Spec.Template
	spec := tmpl.Spec
	where := "Service " + fn
	if len(spec.Containers) != 1 {
		t.Errorf("%s: %d containers, want 1", where, len(spec.Containers))
		return
	}
	c := spec.Containers[0]
	if want := "ko://" + modulePath + "/functions/" + fn; c.Image != want {
		t.Errorf("%s: image %s, want %s", where, c.Image, want)
	}
	if want := "omni-" + fn; spec.ServiceAccountName != want {
		t.Errorf("%s: serviceAccountName %q, want %s (one per function)", where, spec.ServiceAccountName, want)
	}
	for _, a := range []string{"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale"} {
		v, ok := tmpl.Metadata.Annotations[a]
		if n, err := strconv.Atoi(v); !ok || err != nil || n < 0 {
			t.Errorf("%s: annotation %s = %q, want a number", where, a, v)
		}
	}
	if tmpl.Metadata.Annotations["autoscaling.knative.dev/min-scale"] != "0" {
		t.Errorf("%s: min-scale is not 0 (scale to zero)", where)
	}
	if spec.ContainerConcurrency == nil || *spec.ContainerConcurrency <= 0 {
		t.Errorf("%s: no containerConcurrency", where)
	}
	switch {
	case spec.TimeoutSeconds == nil:
		t.Errorf("%s: no timeoutSeconds", where)
	case fn == "query" && *spec.TimeoutSeconds < 3600:
		t.Errorf("%s: timeoutSeconds %d, want >= 3600 for log follow", where, *spec.TimeoutSeconds)
	case *spec.TimeoutSeconds > 3600:
		// Knative refuses more than max-revision-timeout-seconds; docs/deploy.md raises it to 3600.
		t.Errorf("%s: timeoutSeconds %d is above the 3600 docs/deploy.md sets as Knative's maximum", where, *spec.TimeoutSeconds)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: want a readiness probe on /readyz", where)
	}
	if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("%s: want a liveness probe on /healthz", where)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", where, r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("%s: no %s limit", where, r)
		}
	}
	if s.Metadata.Labels["networking.knative.dev/visibility"] != "cluster-local" {
		t.Errorf("%s: not cluster-local (the public API is the HTTPRoute)", where)
	}
	if sc := c.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: want runAsNonRoot and no privilege escalation", where)
	}
}

// checkRef checks that a Destination ref names a Knative Service of config/.
func checkRef(t *testing.T, d *deployment, what, ns string, ref interface {
	String() string
}) {
	t.Helper()
	b, _ := json.Marshal(ref)
	var r struct{ APIVersion, Kind, Name, Namespace string }
	_ = json.Unmarshal(b, &r)
	if r.Namespace == "" {
		r.Namespace = ns
	}
	if r.Kind != "Service" || r.APIVersion != "serving.knative.dev/v1" {
		t.Errorf("%s: %s %s is not a Knative Service", what, r.APIVersion, r.Kind)
		return
	}
	if s := d.services[r.Name]; s == nil || s.Metadata.Namespace != r.Namespace {
		t.Errorf("%s: no Knative Service %s/%s in config/", what, r.Namespace, r.Name)
	}
}

func checkBrokerRef(t *testing.T, brokers map[string]bool, what, ns string, ref interface{ String() string }) {
	t.Helper()
	b, _ := json.Marshal(ref)
	var r struct{ APIVersion, Kind, Name, Namespace string }
	_ = json.Unmarshal(b, &r)
	if r.Namespace == "" {
		r.Namespace = ns
	}
	if r.Kind != "Broker" || !brokers[r.Namespace+"/"+r.Name] {
		t.Errorf("%s: sink %s %s/%s is not a Broker of config/", what, r.Kind, r.Namespace, r.Name)
	}
}

// serviceEnv returns the variables the Service's container gets: its env, the keys of its
// envFrom ConfigMaps, PORT (Knative), and K_SINK when a SinkBinding selects the Service. Values
// are the literal value or a description.
func serviceEnv(t *testing.T, d *deployment, s *knService) map[string]string {
	t.Helper()
	c := s.Spec.Template.Spec.Containers[0]
	set := map[string]string{"PORT": "set by Knative"}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("Service %s: envFrom other than a ConfigMap", s.Metadata.Name)
			continue
		}
		data, ok := d.configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("Service %s: envFrom ConfigMap %s is not in config/", s.Metadata.Name, ef.ConfigMapRef.Name)
		}
		for k, v := range data {
			set[k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
			set[e.Name] = "secret " + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		case e.ValueFrom != nil:
			set[e.Name] = "from the pod"
		default:
			set[e.Name] = e.Value
			if e.Value == "" {
				set[e.Name] = "(empty)"
			}
		}
	}
	for _, sb := range d.sinkBindings {
		sub := sb.Spec.Subject
		if sub.Kind != "Service" || sub.APIVersion != "serving.knative.dev/v1" || sb.Namespace != s.Metadata.Namespace {
			continue
		}
		match := sub.Name == s.Metadata.Name
		if sub.Selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(sub.Selector)
			if err != nil {
				t.Fatal(err)
			}
			match = sel.Matches(labels.Set(s.Metadata.Labels))
		}
		if match {
			set["K_SINK"] = "SinkBinding " + sb.Name
		}
	}
	return set
}

// documentedVariables are the variables of the table in docs/configuration.md (first column).
func documentedVariables(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	return out
}

// checkMountedPaths checks that every absolute path a setting of the Service names is inside a
// volume it mounts, and, for ConfigMap volumes of config/, that the file is a key of it.
func checkMountedPaths(t *testing.T, fn string, s *knService, d *deployment) {
	t.Helper()
	c := s.Spec.Template.Spec.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range s.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("Service %s mounts volume %s, which it does not declare", fn, m.Name)
		}
		if !m.ReadOnly {
			t.Errorf("Service %s: mount %s is not readOnly (Knative refuses that)", fn, m.MountPath)
		}
		// Paths Knative reserves for itself (knative.dev/serving pkg/apis/serving/k8s_validation.go).
		if slices.Contains([]string{"/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"}, path.Clean(m.MountPath)) {
			t.Errorf("Service %s: mount path %s is reserved by Knative", fn, m.MountPath)
		}
	}
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Value, "/") {
			continue
		}
		p := path.Clean(e.Value)
		var under []corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			if p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/") || strings.HasPrefix(m.MountPath, p+"/") {
				under = append(under, m)
			}
		}
		if len(under) == 0 {
			t.Errorf("Service %s: %s=%s is in no mounted volume", fn, e.Name, e.Value)
			continue
		}
		for _, m := range under {
			v := volumes[m.Name]
			if v.ConfigMap == nil || !strings.HasPrefix(p, m.MountPath+"/") {
				continue
			}
			key := strings.TrimPrefix(p, m.MountPath+"/")
			if data, ok := d.configMaps[v.ConfigMap.Name]; ok {
				if _, ok := data[key]; !ok {
					t.Errorf("Service %s: %s=%s, but ConfigMap %s has no key %s", fn, e.Name, e.Value, v.ConfigMap.Name, key)
				}
			}
		}
	}
	// The job types: every task folder is mounted under OMNI_TEMPLATES_DIR.
	for _, e := range c.Env {
		if e.Name != "OMNI_TEMPLATES_DIR" {
			continue
		}
		dirs, _ := filepath.Glob(filepath.Join(repoRoot(t), "templates", "*", "task.yaml"))
		for _, taskFile := range dirs {
			task := filepath.Base(filepath.Dir(taskFile))
			found := false
			for _, m := range c.VolumeMounts {
				if v := volumes[m.Name]; m.MountPath == path.Join(e.Value, task) && v.ConfigMap != nil && v.ConfigMap.Name == "omni-templates-"+task {
					found = true
				}
			}
			if !found {
				t.Errorf("Service %s: job type %s is not mounted at %s/%s from ConfigMap omni-templates-%s", fn, task, e.Value, task, task)
			}
		}
	}
}

// checkClusters checks every engine instance of config/clusters/: kubeconfig paths inside the
// mounted Secret of every function that loads the clusters, an ApiServerSource (local
// instances) or a remote adapter (remote ones) that names it, and RBAC for the local ones.
func checkClusters(t *testing.T, d *deployment, fns []string, facts map[string]codeFacts) {
	t.Helper()
	root := repoRoot(t)
	names := map[string]bool{}
	var instances []kube.Instance
	for _, arch := range jobs.Arches {
		b, err := os.ReadFile(filepath.Join(root, "config", "clusters", arch+".yaml"))
		if err != nil {
			t.Errorf("config/clusters/%s.yaml: %v", arch, err)
			continue
		}
		var ac kube.ArchConfig
		if err := yaml.UnmarshalStrict(b, &ac); err != nil {
			t.Errorf("config/clusters/%s.yaml: %v", arch, err)
			continue
		}
		if ac.Arch != arch {
			t.Errorf("config/clusters/%s.yaml: arch %q", arch, ac.Arch)
		}
		if len(ac.Instances) == 0 {
			t.Errorf("config/clusters/%s.yaml: no engine instance", arch)
		}
		for _, in := range ac.Instances {
			if names[in.Name] {
				t.Errorf("engine instance %s defined twice", in.Name)
			}
			names[in.Name] = true
			instances = append(instances, in)
		}
	}
	remote := loadManifests(t, "config/remote-source")
	for _, in := range instances {
		ns := in.Namespace
		if ns == "" {
			ns = "default"
		}
		if in.Kubeconfig == "" {
			checkLocalInstance(t, d, in.Name, ns, fns, facts)
			continue
		}
		// Remote: the kubeconfig is a key of every cluster-using function's Secret mount.
		for _, fn := range fns {
			s := d.services[fn]
			if s == nil || facts[fn].Env["OMNI_CLUSTERS_DIR"] == "" {
				continue
			}
			ok := false
			for _, m := range s.Spec.Template.Spec.Containers[0].VolumeMounts {
				for _, v := range s.Spec.Template.Spec.Volumes {
					if v.Name == m.Name && v.Secret != nil && path.Dir(in.Kubeconfig) == m.MountPath &&
						v.Secret.SecretName == "omni-kubeconfigs-"+fn {
						ok = true
					}
				}
			}
			if !ok {
				t.Errorf("instance %s: kubeconfig %s is not a key of the Secret omni-kubeconfigs-%s mounted by %s", in.Name, in.Kubeconfig, fn, fn)
			}
		}
		if path.Base(in.Kubeconfig) != in.Name {
			t.Errorf("instance %s: kubeconfig %s, want the key named after the instance", in.Name, in.Kubeconfig)
		}
		// Its events: an adapter Deployment in config/remote-source/ with cluster=<name>.
		found := false
		for _, m := range remote {
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
			_ = yaml.Unmarshal(m.Raw, &dep)
			for _, c := range dep.Spec.Template.Spec.Containers {
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				var over struct{ Extensions map[string]string }
				var src struct {
					Namespaces []string
					Mode       string
				}
				_ = json.Unmarshal([]byte(env["K_CE_OVERRIDES"]), &over)
				if err := json.Unmarshal([]byte(env["K_SOURCE_CONFIG"]), &src); err != nil && env["K_SOURCE_CONFIG"] != "" {
					t.Errorf("%s: K_SOURCE_CONFIG: %v", m, err)
				}
				if over.Extensions["cluster"] != in.Name {
					continue
				}
				found = true
				if !slices.Contains(src.Namespaces, ns) || src.Mode != "Resource" {
					t.Errorf("%s: adapter of %s watches %v in mode %q, want namespace %s, Resource mode", m, in.Name, src.Namespaces, src.Mode, ns)
				}
				if env["KUBECONFIG"] != path.Join("/etc/omni/kubeconfigs", in.Name) {
					t.Errorf("%s: KUBECONFIG %s, want /etc/omni/kubeconfigs/%s", m, env["KUBECONFIG"], in.Name)
				}
			}
		}
		if !found {
			t.Errorf("remote instance %s: no adapter with K_CE_OVERRIDES cluster=%s in config/remote-source/ (its job events would never arrive)", in.Name, in.Name)
		}
	}
}

// checkLocalInstance: an instance on the Knative cluster itself needs its job namespace in
// config/, an ApiServerSource with ceOverrides cluster=<name> selecting that namespace, and a
// RoleBinding there for every function that loads the clusters.
func checkLocalInstance(t *testing.T, d *deployment, name, ns string, fns []string, facts map[string]codeFacts) {
	t.Helper()
	nsLabels, ok := d.namespaces[ns]
	if !ok {
		t.Errorf("local instance %s: namespace %s is not in config/", name, ns)
	}
	found := false
	for _, s := range d.apiServerSrcs {
		if s.Spec.CloudEventOverrides == nil || s.Spec.CloudEventOverrides.Extensions["cluster"] != name {
			continue
		}
		found = true
		if s.Spec.EventMode != sourcesv1.ResourceMode {
			t.Errorf("ApiServerSource %s: mode %q, want Resource", s.Name, s.Spec.EventMode)
		}
		watches := s.Namespace == ns
		if sel := s.Spec.NamespaceSelector; sel != nil {
			ls, err := metav1.LabelSelectorAsSelector(sel)
			if err != nil {
				t.Fatal(err)
			}
			watches = ls.Matches(labels.Set(nsLabels))
		}
		if !watches {
			t.Errorf("ApiServerSource %s does not watch namespace %s of instance %s", s.Name, ns, name)
		}
		kinds := map[string]bool{}
		for _, r := range s.Spec.Resources {
			kinds[r.APIVersion+" "+r.Kind] = true
			sel, err := metav1.LabelSelectorAsSelector(r.LabelSelector)
			if err != nil || r.LabelSelector == nil {
				t.Errorf("ApiServerSource %s: %s without a label selector", s.Name, r.Kind)
				continue
			}
			if sel.Matches(labels.Set{"app": "other"}) || !strings.Contains(sel.String(), names.LabelJobID) {
				t.Errorf("ApiServerSource %s: %s selector %q does not require %s", s.Name, r.Kind, sel, names.LabelJobID)
			}
		}
		if !kinds["batch/v1 Job"] || !kinds["v1 Pod"] {
			t.Errorf("ApiServerSource %s watches %v, want Jobs and Pods", s.Name, kinds)
		}
		checkRBAC(t, d, s.Namespace, s.Spec.ServiceAccountName, ns, map[string][]string{"jobs": {"list", "watch"}, "pods": {"list", "watch"}})
	}
	if !found {
		t.Errorf("local instance %s: no ApiServerSource in config/ with ceOverrides cluster=%s", name, name)
	}
	for _, fn := range fns {
		s := d.services[fn]
		if s == nil || facts[fn].Env["OMNI_CLUSTERS_DIR"] == "" {
			continue
		}
		if !roleBound(d, s.Metadata.Namespace, s.Spec.Template.Spec.ServiceAccountName, ns) {
			t.Errorf("local instance %s: ServiceAccount of %s has no RoleBinding in %s", name, fn, ns)
		}
	}
}

func roleBound(d *deployment, saNS, sa, ns string) bool {
	for _, rb := range d.roleBindings {
		for _, sub := range rb.Subjects {
			if rb.Namespace == ns && sub.Kind == "ServiceAccount" && sub.Name == sa && sub.Namespace == saNS {
				return true
			}
		}
	}
	return false
}

// checkRBAC checks that sa may do verbs on resources in ns through its RoleBindings.
func checkRBAC(t *testing.T, d *deployment, saNS, sa, ns string, want map[string][]string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, rb := range d.roleBindings {
		if rb.Namespace != ns {
			continue
		}
		for _, sub := range rb.Subjects {
			if sub.Kind != "ServiceAccount" || sub.Name != sa || sub.Namespace != saNS {
				continue
			}
			for _, rule := range d.roles[ns+"/"+rb.RoleRef.Name].Rules {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						allowed[res+" "+v] = true
					}
				}
			}
		}
	}
	for res, verbs := range want {
		for _, v := range verbs {
			if !allowed[res+" "+v] {
				t.Errorf("ServiceAccount %s/%s may not %s %s in %s", saNS, sa, v, res, ns)
			}
		}
	}
}

// checkEventTypes checks every org.openeuler.omni.* type constant of shared/events against the
// Triggers of config/ (Knative's own filter code decides), and, for those no Trigger takes,
// docs/events.md: a line naming the type and the word external.
func checkEventTypes(t *testing.T) {
	t.Helper()
	root := repoRoot(t)
	types := emittedTypes(t, filepath.Join(root, "shared", "events"))
	if len(types) == 0 {
		t.Fatal("no org.openeuler.omni.* type constants in shared/events")
	}
	cfg, err := router.Load(config.FS)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile(filepath.Join(root, "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	statuses := []jobs.Status{jobs.StatusPending, jobs.StatusRunning, jobs.StatusSucceeded, jobs.StatusFailed, jobs.StatusCancelled, jobs.StatusLost}
	for _, typ := range types {
		var takers []string
		for _, tr := range cfg.Triggers {
			f := triggerFilter(t, tr)
			for _, st := range statuses {
				e := cloudevents.NewEvent()
				e.SetID("1")
				e.SetType(typ)
				e.SetSource("/omni/test")
				e.SetSubject("job")
				for k, v := range map[string]string{"omniservice": "svc", "omnitask": "buildrpm", "omnidomain": "", "omniarch": "x86_64", "omnistatus": string(st)} {
					e.SetExtension(k, v)
				}
				if f.Filter(context.Background(), e) != eventfilter.FailFilter {
					takers = append(takers, tr.Name)
					break
				}
			}
			f.Cleanup()
		}
		if len(takers) > 0 {
			t.Logf("%s → Triggers %v", typ, takers)
			continue
		}
		external := false
		for _, line := range strings.Split(string(docs), "\n") {
			if strings.Contains(line, typ) && strings.Contains(strings.ToLower(line), "external") {
				external = true
			}
		}
		if !external {
			t.Errorf("%s is emitted (shared/events) but no Trigger of config/ takes it and docs/events.md does not document it as external (a line naming it and the word external)", typ)
		}
	}
}

// triggerFilter builds a Trigger's filter with Knative's filter code, as the Broker does.
func triggerFilter(t *testing.T, tr *eventingv1.Trigger) eventfilter.Filter {
	t.Helper()
	switch {
	case len(tr.Spec.Filters) > 0:
		return subscriptionsapi.NewAllFilter(subscriptionsapi.MaterializeFiltersList(zap.NewNop(), tr.Spec.Filters)...)
	case tr.Spec.Filter != nil:
		return attributes.NewAttributesFilter(tr.Spec.Filter.Attributes)
	}
	return subscriptionsapi.NewNoFilter()
}

// emittedTypes returns the string constants of the package in dir that start with
// org.openeuler.omni.
func emittedTypes(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, s := range gd.Specs {
					for _, v := range s.(*ast.ValueSpec).Values {
						if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
							if s, _ := strconv.Unquote(lit.Value); strings.HasPrefix(s, "org.openeuler.omni.") {
								out = append(out, s)
							}
						}
					}
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
