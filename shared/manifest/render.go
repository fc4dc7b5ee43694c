package manifest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// Limits and defaults of Render. The labels, annotations and finalizer it puts on the objects
// of a job (on the Job's pod template too) are those of shared/kube/names.
const (
	// DefaultTTLSecondsAfterFinished is the Job's ttlSecondsAfterFinished when Input leaves it nil.
	DefaultTTLSecondsAfterFinished int32 = 3600
	// MaxJobIDLength keeps every derived object name a DNS label.
	MaxJobIDLength = 40
	// MaxFieldLength bounds Input.Service and Input.Domain.
	MaxFieldLength = 256
	// maxDataSize is the Kubernetes limit on the data of a ConfigMap or Secret.
	maxDataSize = 1 << 20
)

// The kinds a template may render. Render returns the Job last, after the objects it mounts.
var (
	ConfigMapKind = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
	SecretKind    = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}
	JobKind       = schema.GroupVersionKind{Group: "batch", Version: "v1", Kind: "Job"}
	// AllowedKinds lists them; deleting a job's objects means deleting these kinds by names.LabelJobID.
	AllowedKinds = []schema.GroupVersionKind{ConfigMapKind, SecretKind, JobKind}
)

// Input is what Render needs to know about a job.
type Input struct {
	// JobID is a lowercase DNS label of at most MaxJobIDLength characters (the lead generates
	// 26-character lowercase ULID-like ids).
	JobID string
	// Namespace is the namespace on the chosen cluster; every object is put there.
	Namespace string
	Service   string
	// Task must be empty or equal the task passed to Render.
	Task   string
	Domain string
	// Arch is the build architecture (x86_64, aarch64); it picks the nodes (kubernetes.io/arch).
	Arch string
	// Parameters are the job's parameters; Render validates them and applies defaults again.
	Parameters map[string]any
	// TTLSecondsAfterFinished is the Job's ttlSecondsAfterFinished; nil means
	// DefaultTTLSecondsAfterFinished.
	TTLSecondsAfterFinished *int32
	// Labels are the client's labels of the job. They are put on every object and on the pod
	// (so cluster tooling can select by them), under ours: a key of ours always keeps our value.
	// Keys and values must be valid Kubernetes labels; see CheckLabels.
	Labels map[string]string
	// Attempt is the job's attempt (docs/queue.md); 0 or 1 is the first. From the second on,
	// the objects are named for it (ObjectName(JobID+"-a<n>", …), so that they never collide
	// with those an earlier attempt left) and labelled names.LabelAttempt.
	Attempt int
}

// objectBase is what the objects of in are named after: the job id, with "-a<n>" from the
// second attempt on.
func (in Input) objectBase() string {
	if in.Attempt <= 1 {
		return in.JobID
	}
	return in.JobID + "-a" + strconv.Itoa(in.Attempt)
}

// ReservedLabelPrefixes are label key prefixes clients may not set.
var ReservedLabelPrefixes = []string{"omni.openeuler.org/", "app.kubernetes.io/managed-by", "batch.kubernetes.io/", "kubernetes.io/", "k8s.io/"}

// CheckLabels checks client labels: valid Kubernetes label keys and values, none reserved.
func CheckLabels(labels map[string]string) error {
	for k, v := range labels {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return jobs.Invalid("labels", "key %q: %s", k, strings.Join(errs, "; "))
		}
		for _, p := range ReservedLabelPrefixes {
			if strings.HasPrefix(k, p) || strings.Contains(k, "."+p) {
				return jobs.Invalid("labels", "key %q: the prefix %s is reserved", k, p)
			}
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return jobs.Invalid("labels."+k, "%s", strings.Join(errs, "; "))
		}
	}
	return nil
}

// ObjectName is the name of a job's object: "omni-<jobID>" for the Job, "omni-<jobID>-<suffix>"
// for the others (templates call {{ .ObjectName "inputs" }}).
func ObjectName(jobID, suffix string) string {
	if suffix == "" {
		return "omni-" + jobID
	}
	return "omni-" + jobID + "-" + suffix
}

// LabelValue returns s if it is a valid label value, else "sha256-" and 40 hex digits of its
// SHA-256, so that any string can be selected on.
func LabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + hex.EncodeToString(sum[:20])
}

// templateData is the dot of the resource templates. Every string in it is a value, which
// prints as a marker that Render rejects unless a quoting helper encoded it.
type templateData struct {
	JobID, Namespace, Service, Task, Domain, Arch value
	// KubeArch is the kubernetes.io/arch value of Arch (amd64, arm64).
	KubeArch value
	// Name is the name of the Job: ObjectName(JobID, "") (with the attempt from the second on).
	Name value
	base string
	// Parameters are the effective parameters (defaults applied); Settings those of task.yaml.
	Parameters map[string]any
	Settings   map[string]any
}

// ObjectName returns ObjectName(JobID, suffix) for templates (with the attempt from the second
// on).
func (d *templateData) ObjectName(suffix string) value {
	return value(ObjectName(d.base, suffix))
}

// Render validates the job's input and renders the task's objects, checked and completed, in
// creation order (ConfigMaps and Secrets, then the Job). Bad input yields a *jobs.InvalidError
// naming the field; any other error means the task's templates are broken.
func (c *Catalogue) Render(task string, in Input) ([]*unstructured.Unstructured, error) {
	t, err := c.lookup(task, in.Arch)
	if err != nil {
		return nil, err
	}
	if in.Task != "" && in.Task != task {
		return nil, fmt.Errorf("render %s: input is for task %q", task, in.Task)
	}
	return t.render(in)
}

func (t *task) render(in Input) ([]*unstructured.Unstructured, error) {
	in.Task = t.Name
	if err := checkInput(in); err != nil {
		return nil, err
	}
	params, err := t.validate(in.Parameters)
	if err != nil {
		return nil, err
	}
	settings, _ := taint(t.settings).(map[string]any)
	data := &templateData{
		JobID: value(in.JobID), Namespace: value(in.Namespace), Service: value(in.Service),
		Task: value(in.Task), Domain: value(in.Domain), Arch: value(in.Arch),
		KubeArch:   value(jobs.KubeArch(in.Arch)),
		Name:       value(ObjectName(in.objectBase(), "")),
		base:       in.objectBase(),
		Parameters: taint(params).(map[string]any),
		Settings:   settings,
	}
	var objs []*unstructured.Unstructured
	for _, tmpl := range t.templates {
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, data); err != nil {
			return nil, fmt.Errorf("render task %s: %w", t.Name, err)
		}
		if unquoted(buf.Bytes()) {
			return nil, fmt.Errorf("render task %s: template %s prints a value without a quoting helper (yamlstr, json, b64)", t.Name, tmpl.Name())
		}
		docs, err := parseObjects(buf.Bytes())
		if err != nil {
			return nil, fmt.Errorf("render task %s: template %s: %w", t.Name, tmpl.Name(), err)
		}
		objs = append(objs, docs...)
	}
	return finish(objs, in, t.Steps)
}

// checkInput checks the job fields that end up in names, labels and annotations.
func checkInput(in Input) error {
	if errs := validation.IsDNS1123Label(in.JobID); len(errs) > 0 || len(in.JobID) > MaxJobIDLength {
		return fmt.Errorf("job id %q must be a DNS label of at most %d characters", in.JobID, MaxJobIDLength)
	}
	if errs := validation.IsDNS1123Label(in.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", in.Namespace, strings.Join(errs, "; "))
	}
	for _, f := range []struct{ name, v string }{{"service", in.Service}, {"domain", in.Domain}} {
		if len(f.v) > MaxFieldLength {
			return jobs.Invalid(f.name, "longer than %d bytes", MaxFieldLength)
		}
		if !utf8.ValidString(f.v) {
			return jobs.Invalid(f.name, "not valid UTF-8")
		}
	}
	if in.TTLSecondsAfterFinished != nil && *in.TTLSecondsAfterFinished < 0 {
		return fmt.Errorf("ttlSecondsAfterFinished %d is negative", *in.TTLSecondsAfterFinished)
	}
	return nil
}

// parseObjects splits rendered YAML into documents and decodes each into an object. Duplicate
// keys are an error; empty documents are skipped.
func parseObjects(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, err
		}
		if s := string(bytes.TrimSpace(j)); s == "null" || s == "" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(j); err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
}

// finish checks the rendered objects against the rules and completes them.
func finish(objs []*unstructured.Unstructured, in Input, steps []string) ([]*unstructured.Unstructured, error) {
	jobName := ObjectName(in.objectBase(), "")
	if err := CheckLabels(in.Labels); err != nil {
		return nil, err
	}
	labels := merge(maps.Clone(in.Labels), map[string]string{
		names.LabelJobID:     in.JobID,
		names.LabelManagedBy: names.ManagedBy,
		names.LabelTask:      LabelValue(in.Task),
		names.LabelArch:      LabelValue(in.Arch),
	})
	if in.Attempt > 1 {
		labels[names.LabelAttempt] = strconv.Itoa(in.Attempt)
	}
	annotations := map[string]string{}
	if in.Service != "" {
		labels[names.LabelService] = LabelValue(in.Service)
		annotations[names.AnnotationService] = in.Service
	}
	if in.Domain != "" {
		labels[names.LabelDomain] = LabelValue(in.Domain)
		annotations[names.AnnotationDomain] = in.Domain
	}

	var first []*unstructured.Unstructured
	var job *unstructured.Unstructured
	seen := map[string]bool{}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		id := gvk.Kind + "/" + obj.GetName()
		if seen[id] {
			return nil, fmt.Errorf("%s rendered twice", id)
		}
		seen[id] = true
		var out map[string]any
		var err error
		switch gvk {
		case ConfigMapKind:
			out, err = finishConfigMap(obj, in, labels, annotations)
		case SecretKind:
			out, err = finishSecret(obj, in, labels, annotations)
		case JobKind:
			if job != nil {
				return nil, errors.New("more than one Job rendered")
			}
			out, err = finishJob(obj, in, labels, annotations, steps)
		default:
			return nil, fmt.Errorf("kind %s is not allowed (allowed: ConfigMap, Secret, batch/v1 Job)", gvk)
		}
		if err != nil {
			var ie *jobs.InvalidError
			if errors.As(err, &ie) {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		u := &unstructured.Unstructured{Object: out}
		if gvk == JobKind {
			job = u
		} else {
			first = append(first, u)
		}
	}
	if job == nil {
		return nil, fmt.Errorf("no Job rendered (want a batch/v1 Job named %s)", jobName)
	}
	return append(first, job), nil
}

// finishMeta applies the metadata rules common to every object.
func finishMeta(m *metav1.ObjectMeta, in Input, isJob bool, labels, annotations map[string]string) error {
	jobName := ObjectName(in.objectBase(), "")
	if isJob {
		if m.Name != jobName {
			return fmt.Errorf("the Job must be named %s", jobName)
		}
	} else {
		suffix, ok := strings.CutPrefix(m.Name, jobName+"-")
		if !ok || len(validation.IsDNS1123Label(suffix)) > 0 || len(validation.IsDNS1123Subdomain(m.Name)) > 0 {
			return fmt.Errorf("name must be ObjectName(job id, suffix) = %s-<suffix>, with a DNS-label suffix", jobName)
		}
	}
	if m.GenerateName != "" {
		return errors.New("generateName is not allowed")
	}
	if m.Namespace != "" && m.Namespace != in.Namespace {
		return fmt.Errorf("namespace %q is not allowed: objects go to the job's namespace %q", m.Namespace, in.Namespace)
	}
	m.Namespace = in.Namespace
	if len(m.OwnerReferences) > 0 || len(m.Finalizers) > 0 || m.UID != "" || m.ResourceVersion != "" {
		return errors.New("ownerReferences, finalizers, uid and resourceVersion are not for templates to set")
	}
	m.Labels = merge(m.Labels, labels)
	m.Annotations = merge(m.Annotations, annotations)
	return nil
}

func merge(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = make(map[string]string, len(src))
	}
	maps.Copy(dst, src)
	return dst
}

func finishConfigMap(obj *unstructured.Unstructured, in Input, labels, annotations map[string]string) (map[string]any, error) {
	var cm corev1.ConfigMap
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, &cm, true); err != nil {
		return nil, err
	}
	if err := finishMeta(&cm.ObjectMeta, in, false, labels, annotations); err != nil {
		return nil, err
	}
	size := 0
	for k, v := range cm.Data {
		size += len(k) + len(v)
	}
	for k, v := range cm.BinaryData {
		size += len(k) + len(v)
	}
	if err := checkKeys(cm.Data, cm.BinaryData); err != nil {
		return nil, err
	}
	if size > maxDataSize {
		return nil, jobs.Invalid("parameters", "the job's inputs take %d bytes, more than the %d a ConfigMap holds", size, maxDataSize)
	}
	return toUnstructured(&cm)
}

func finishSecret(obj *unstructured.Unstructured, in Input, labels, annotations map[string]string) (map[string]any, error) {
	var s corev1.Secret
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, &s, true); err != nil {
		return nil, err
	}
	if err := finishMeta(&s.ObjectMeta, in, false, labels, annotations); err != nil {
		return nil, err
	}
	size := 0
	for k, v := range s.Data {
		size += len(k) + len(v)
	}
	for k, v := range s.StringData {
		size += len(k) + len(v)
	}
	if err := checkKeys(s.Data, s.StringData); err != nil {
		return nil, err
	}
	if size > maxDataSize {
		return nil, jobs.Invalid("parameters", "the job's secret inputs take %d bytes, more than the %d a Secret holds", size, maxDataSize)
	}
	return toUnstructured(&s)
}

// checkKeys checks that data keys are valid file names for a volume.
func checkKeys[A, B any](a map[string]A, b map[string]B) error {
	for _, k := range slices.Concat(slices.Collect(maps.Keys(a)), slices.Collect(maps.Keys(b))) {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			return fmt.Errorf("data key %q: %s", k, strings.Join(errs, "; "))
		}
	}
	return nil
}

func finishJob(obj *unstructured.Unstructured, in Input, labels, annotations map[string]string, steps []string) (map[string]any, error) {
	var job batchv1.Job
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, &job, true); err != nil {
		return nil, err
	}
	if err := finishMeta(&job.ObjectMeta, in, true, labels, annotations); err != nil {
		return nil, err
	}
	spec := &job.Spec
	if spec.Selector != nil || (spec.ManualSelector != nil && *spec.ManualSelector) {
		return nil, errors.New("spec.selector and spec.manualSelector are not allowed")
	}
	one := int32(1)
	for _, f := range []struct {
		name string
		p    **int32
	}{{"parallelism", &spec.Parallelism}, {"completions", &spec.Completions}} {
		if *f.p != nil && **f.p != 1 {
			return nil, fmt.Errorf("spec.%s must be 1: a job is one pod whose containers are its steps", f.name)
		}
		*f.p = ptr(one)
	}
	if spec.BackoffLimitPerIndex != nil || spec.MaxFailedIndexes != nil {
		return nil, errors.New("indexed-job retries are not allowed")
	}
	spec.BackoffLimit = ptr(int32(0))
	ttl := DefaultTTLSecondsAfterFinished
	if in.TTLSecondsAfterFinished != nil {
		ttl = *in.TTLSecondsAfterFinished
	}
	spec.TTLSecondsAfterFinished = ptr(ttl)

	pt := &spec.Template
	if pt.Namespace != "" && pt.Namespace != in.Namespace {
		return nil, fmt.Errorf("pod template namespace %q is not allowed", pt.Namespace)
	}
	pt.Namespace = ""
	if pt.Name != "" || pt.GenerateName != "" || len(pt.OwnerReferences) > 0 {
		return nil, errors.New("the pod template may not set name, generateName or ownerReferences")
	}
	pt.Labels = merge(pt.Labels, labels)
	pt.Annotations = merge(pt.Annotations, annotations)
	if !slices.Contains(pt.Finalizers, names.PodFinalizer) {
		pt.Finalizers = append(pt.Finalizers, names.PodFinalizer)
	}
	ps := &pt.Spec
	ps.RestartPolicy = corev1.RestartPolicyNever
	if ps.NodeSelector == nil {
		ps.NodeSelector = map[string]string{}
	}
	ps.NodeSelector[corev1.LabelArchStable] = jobs.KubeArch(in.Arch)
	if len(ps.EphemeralContainers) > 0 {
		return nil, errors.New("ephemeral containers are not allowed")
	}
	var names []string
	for _, c := range ps.InitContainers {
		if c.RestartPolicy != nil {
			return nil, fmt.Errorf("init container %s: restartPolicy (sidecars) is not allowed: every init container is a step", c.Name)
		}
		names = append(names, c.Name)
	}
	for _, c := range ps.Containers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, steps) {
		return nil, fmt.Errorf("the pod's containers %v (init containers, then main containers) differ from the task's steps %v", names, steps)
	}
	return toUnstructured(&job)
}

func ptr[T any](v T) *T { return &v }

// toUnstructured converts a typed object back, dropping the empty creationTimestamp and status
// that conversion adds.
func toUnstructured(obj runtime.Object) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
	if s, ok := m["status"].(map[string]any); ok && len(s) == 0 {
		delete(m, "status")
	}
	return m, nil
}
