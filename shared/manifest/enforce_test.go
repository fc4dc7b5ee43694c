package manifest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

const fixtureMeta = `description: A fixture task.
arches: [x86_64, aarch64]
steps: [one, two]
resources: [inputs.yaml, job.yaml]
settings:
  image: busybox:1.36
parameters:
  type: object
  additionalProperties: false
  properties:
    msg: {type: string, default: hi}
    count: {type: integer, default: 2}
  examples: [{msg: hello}]
`

const fixtureInputs = `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ yamlstr (.ObjectName "inputs") }}
data:
  msg: {{ yamlstr .Parameters.msg }}
`

const fixtureJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: {{ yamlstr .Name }}
spec:
  activeDeadlineSeconds: {{ .Parameters.count }}
  template:
    spec:
      initContainers:
        - name: one
          image: {{ yamlstr .Settings.image }}
          args: [cat, /in/msg]
      containers:
        - name: two
          image: {{ yamlstr .Settings.image }}
          args: [echo, {{ yamlstr .Parameters.msg }}]
`

// fixture builds a one-task catalogue file system ("fix") from the good fixture with some files
// replaced.
func fixture(replace map[string]string) fstest.MapFS {
	files := map[string]string{"task.yaml": fixtureMeta, "inputs.yaml": fixtureInputs, "job.yaml": fixtureJob}
	for k, v := range replace {
		files[k] = v
	}
	fsys := fstest.MapFS{}
	for k, v := range files {
		fsys["fix/"+k] = &fstest.MapFile{Data: []byte(v)}
	}
	return fsys
}

func fixtureInput() Input {
	return Input{JobID: "job1", Namespace: "builds", Service: "svc", Domain: "dom", Arch: "x86_64"}
}

func TestLoadRejectsBadTemplates(t *testing.T) {
	jobWith := func(old, new string) map[string]string {
		if !strings.Contains(fixtureJob, old) {
			panic("fixture does not contain " + old)
		}
		return map[string]string{"job.yaml": strings.Replace(fixtureJob, old, new, 1)}
	}
	inputsWith := func(old, new string) map[string]string {
		if !strings.Contains(fixtureInputs, old) {
			panic("fixture does not contain " + old)
		}
		return map[string]string{"inputs.yaml": strings.Replace(fixtureInputs, old, new, 1)}
	}
	metaWith := func(old, new string) map[string]string {
		if !strings.Contains(fixtureMeta, old) {
			panic("fixture does not contain " + old)
		}
		return map[string]string{"task.yaml": strings.Replace(fixtureMeta, old, new, 1)}
	}
	tests := map[string]struct {
		files map[string]string
		want  string
	}{
		"pod kind":              {inputsWith("kind: ConfigMap", "kind: Pod"), "kind /v1, Kind=Pod is not allowed"},
		"rbac kind":             {inputsWith("apiVersion: v1\nkind: ConfigMap", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding"), "is not allowed"},
		"service account":       {inputsWith("kind: ConfigMap", "kind: ServiceAccount"), "is not allowed"},
		"configmap as v2":       {inputsWith("apiVersion: v1", "apiVersion: v2"), "is not allowed"},
		"list kind":             {inputsWith("kind: ConfigMap", "kind: List\nitems: []"), ""},
		"other namespace":       {inputsWith("metadata:\n", "metadata:\n  namespace: kube-system\n"), `namespace "kube-system" is not allowed`},
		"pod template ns":       {jobWith("  template:\n", "  template:\n    metadata:\n      namespace: kube-system\n"), `pod template namespace "kube-system"`},
		"job name":              {jobWith("name: {{ yamlstr .Name }}", "name: builder"), "the Job must be named omni-"},
		"job name with suffix":  {jobWith("name: {{ yamlstr .Name }}", `name: {{ yamlstr (.ObjectName "job") }}`), "the Job must be named omni-"},
		"configmap name":        {inputsWith(`name: {{ yamlstr (.ObjectName "inputs") }}`, "name: inputs"), "ObjectName(job id, suffix)"},
		"configmap bad suffix":  {inputsWith(`name: {{ yamlstr (.ObjectName "inputs") }}`, `name: {{ yamlstr (.ObjectName "In_puts") }}`), "ObjectName(job id, suffix)"},
		"configmap is job name": {inputsWith(`name: {{ yamlstr (.ObjectName "inputs") }}`, `name: {{ yamlstr .Name }}`), "ObjectName(job id, suffix)"},
		"generateName":          {inputsWith("metadata:\n", "metadata:\n  generateName: x-\n"), "generateName"},
		"ownerReferences":       {inputsWith("metadata:\n", "metadata:\n  ownerReferences: [{apiVersion: v1, kind: Pod, name: p, uid: u}]\n"), "ownerReferences"},
		"object finalizers":     {inputsWith("metadata:\n", "metadata:\n  finalizers: [x/y]\n"), "finalizers"},
		"two jobs":              {map[string]string{"inputs.yaml": fixtureJob}, "rendered twice"},
		"no job":                {map[string]string{"job.yaml": "# nothing\n"}, "no Job rendered"},
		"twice the same":        {map[string]string{"job.yaml": fixtureInputs + "---\n" + fixtureJob}, "rendered twice"},
		"steps differ":          {jobWith("- name: two", "- name: three"), "differ from the task's steps"},
		"steps order":           {metaWith("steps: [one, two]", "steps: [two, one]"), "differ from the task's steps"},
		"sidecar":               {jobWith("        - name: one\n", "        - name: one\n          restartPolicy: Always\n"), "sidecars"},
		"parallelism":           {jobWith("spec:\n  activeDeadlineSeconds", "spec:\n  parallelism: 3\n  activeDeadlineSeconds"), "spec.parallelism must be 1"},
		"selector":              {jobWith("spec:\n  activeDeadlineSeconds", "spec:\n  selector: {matchLabels: {a: b}}\n  activeDeadlineSeconds"), "spec.selector"},
		"unknown field":         {jobWith("      containers:", "      contianers: []\n      containers:"), "unknown field"},
		"duplicate key":         {inputsWith("data:\n  msg", "data:\n  msg: x\n  msg"), "already set in map"},
		"raw value":             {inputsWith("{{ yamlstr .Parameters.msg }}", "{{ .Parameters.msg }}"), "without a quoting helper"},
		"raw setting":           {jobWith("image: {{ yamlstr .Settings.image }}", "image: {{ .Settings.image }}"), "without a quoting helper"},
		"raw job field":         {inputsWith("data:\n  msg", "data:\n  d: {{ .Domain }}\n  msg"), "without a quoting helper"},
		"raw name":              {jobWith("name: {{ yamlstr .Name }}", "name: {{ .Name }}"), "without a quoting helper"},
		"printf value":          {inputsWith("{{ yamlstr .Parameters.msg }}", `"{{ printf "%s" .Parameters.msg }}"`), "without a quoting helper"},
		"printf %x value":       {inputsWith("{{ yamlstr .Parameters.msg }}", `"{{ printf "%.4s" .Parameters.msg }}"`), "without a quoting helper"},
		"printf %q value":       {inputsWith("{{ yamlstr .Parameters.msg }}", `{{ printf "%q" .Parameters.msg }}`), "without a quoting helper"},
		"html escaping":         {inputsWith("{{ yamlstr .Parameters.msg }}", `"{{ html .Parameters.msg }}"`), "without a quoting helper"},
		"raw json":              {inputsWith("{{ yamlstr .Parameters.msg }}", `{{ json .Parameters.msg }}`), "without a quoting helper"},
		"raw concat":            {inputsWith("{{ yamlstr .Parameters.msg }}", `"x{{ concat .Parameters.msg }}"`), "without a quoting helper"},
		"missing key":           {inputsWith("{{ yamlstr .Parameters.msg }}", `{{ yamlstr .Parameters.mgs }}`), "map has no entry for key"},
		"no template syntax":    {inputsWith("{{ yamlstr .Parameters.msg }}", `{{ yamlstr .Parameters.msg `), "unclosed action"},
		"unknown helper":        {inputsWith("{{ yamlstr .Parameters.msg }}", `{{ toYaml .Parameters.msg }}`), `function "toYaml" not defined`},
		"unknown arch":          {metaWith("arches: [x86_64, aarch64]", "arches: [x86_64, riscv64]"), `unknown architecture "riscv64"`},
		"no arches":             {metaWith("arches: [x86_64, aarch64]", "arches: []"), "arches is empty"},
		"bad step name":         {metaWith("steps: [one, two]", "steps: [one, Two_2]"), "is not a container name"},
		"no example":            {metaWith("  examples: [{msg: hello}]\n", ""), "examples"},
		"bad example":           {metaWith("examples: [{msg: hello}]", "examples: [{msg: 7}]"), "parameters.msg"},
		"schema not object":     {metaWith("  type: object\n", "  type: array\n"), `"type": "object"`},
		"schema invalid":        {metaWith("msg: {type: string, default: hi}", "msg: {type: strung}"), "parameters"},
		"remote ref":            {metaWith("msg: {type: string, default: hi}", "msg: {$ref: 'https://example.org/s.json'}"), "parameters"},
		"bad data key":          {inputsWith("data:\n  msg", "data:\n  ../x: v\n  msg"), "data key"},
		"metadata typo":         {metaWith("description:", "descriptoin: x\ndescription:"), "unknown field"},
		"no description":        {metaWith("description: A fixture task.", "description: ''"), "description is empty"},
		"missing resource":      {metaWith("resources: [inputs.yaml, job.yaml]", "resources: [inputs.yaml, job.yaml, more.yaml]"), "more.yaml"},
		"resource escapes":      {metaWith("resources: [inputs.yaml, job.yaml]", "resources: [../fix/job.yaml]"), "must name a template file"},
		"resource is metadata":  {metaWith("resources: [inputs.yaml, job.yaml]", "resources: [task.yaml]"), "must name a template file"},
		"settings not a map":    {metaWith("settings:\n  image: busybox:1.36\n", "settings: [1]\n"), "settings must be a mapping"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Load(fixture(tc.files))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestLoadFolders(t *testing.T) {
	good := fixture(nil)
	t.Run("bad task name", func(t *testing.T) {
		fsys := fstest.MapFS{}
		for k, v := range good {
			fsys["Build_Fix/"+strings.TrimPrefix(k, "fix/")] = v
		}
		if _, err := Load(fsys); err == nil || !strings.Contains(err.Error(), "DNS label") {
			t.Errorf("Load: %v, want a task name error", err)
		}
	})
	t.Run("folder without task.yaml", func(t *testing.T) {
		fsys := fixture(nil)
		fsys["other/job.yaml"] = &fstest.MapFile{Data: []byte(fixtureJob)}
		if _, err := Load(fsys); err == nil || !strings.Contains(err.Error(), "load task other") {
			t.Errorf("Load: %v, want an error about folder other", err)
		}
	})
	t.Run("hidden folders and plain files are skipped", func(t *testing.T) {
		fsys := fixture(nil)
		fsys["..data/garbage/task.yaml"] = &fstest.MapFile{Data: []byte("not: [valid")}
		fsys["_drafts/task.yaml"] = &fstest.MapFile{Data: []byte("not: [valid")}
		fsys["README.md"] = &fstest.MapFile{Data: []byte("# tasks")}
		c, err := Load(fsys)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(c.Tasks()); n != 1 {
			t.Errorf("%d tasks, want 1", n)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, err := Load(fstest.MapFS{}); err == nil {
			t.Error("Load of an empty file system succeeded")
		}
	})
}

// TestRenderRejectsInputDependentBreakage covers templates that render their example fine but
// break for some input: Render must still refuse the objects.
func TestRenderRejectsInputDependentBreakage(t *testing.T) {
	c, err := Load(fixture(map[string]string{
		"inputs.yaml": `{{ if eq .Parameters.msg "pod" }}apiVersion: v1
kind: Pod
metadata:
  name: {{ yamlstr (.ObjectName "pod") }}
{{ else if eq .Parameters.msg "raw" }}apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ yamlstr (.ObjectName "inputs") }}
data:
  msg: "{{ .Parameters.msg }}"
{{ else }}` + fixtureInputs + `{{ end }}`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	for msg, want := range map[string]string{"pod": "is not allowed", "raw": "without a quoting helper"} {
		in := fixtureInput()
		in.Parameters = map[string]any{"msg": msg}
		_, err := c.Render("fix", in)
		if err == nil || !strings.Contains(err.Error(), want) || jobs.IsInvalid(err) {
			t.Errorf("msg=%s: Render error %v, want a template error mentioning %q", msg, err, want)
		}
	}
}

func TestRenderEnforces(t *testing.T) {
	job := strings.Replace(fixtureJob, "  template:\n    spec:\n", `  backoffLimit: 6
  ttlSecondsAfterFinished: 5
  template:
    metadata:
      labels:
        omni.openeuler.org/job-id: someone-else
        team: builds
      finalizers: [omni.openeuler.org/log-archive]
    spec:
      restartPolicy: OnFailure
      nodeSelector:
        kubernetes.io/arch: s390x
        disk: ssd
`, 1)
	inputs := strings.Replace(fixtureInputs, "metadata:\n", "metadata:\n  namespace: {{ yamlstr .Namespace }}\n  labels: {app.kubernetes.io/managed-by: helm}\n", 1) +
		"---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ yamlstr (.ObjectName \"secret\") }}\ndata:\n  msg: {{ b64 .Parameters.msg }}\n"
	c, err := Load(fixture(map[string]string{"job.yaml": job, "inputs.yaml": inputs}))
	if err != nil {
		t.Fatal(err)
	}
	ttl := int32(60)
	in := fixtureInput()
	in.Arch = "aarch64"
	in.Service = "Some Service!"
	in.TTLSecondsAfterFinished = &ttl
	in.Parameters = map[string]any{"msg": "x\ny"}
	objs, err := c.Render("fix", in)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"v1/ConfigMap/builds/omni-job1-inputs", "v1/Secret/builds/omni-job1-secret", "batch/v1/Job/builds/omni-job1"}, objectIDs(objs)); diff != "" {
		t.Fatalf("objects (-want +got):\n%s", diff)
	}
	wantLabels := map[string]string{
		names.LabelJobID: "job1", names.LabelManagedBy: names.ManagedBy, names.LabelTask: "fix", names.LabelArch: "aarch64",
		names.LabelService: LabelValue("Some Service!"), names.LabelDomain: "dom",
	}
	for _, o := range objs {
		for k, v := range wantLabels {
			if got := o.GetLabels()[k]; got != v {
				t.Errorf("%s: label %s = %q, want %q", o.GetName(), k, got, v)
			}
		}
		if got := o.GetAnnotations()[names.AnnotationService]; got != "Some Service!" {
			t.Errorf("%s: service annotation %q", o.GetName(), got)
		}
	}
	secret, _, _ := unstructured.NestedString(objs[1].Object, "data", "msg")
	if b, _ := base64.StdEncoding.DecodeString(secret); string(b) != "x\ny" {
		t.Errorf("secret data %q", secret)
	}
	j := objs[2].Object
	checks := []struct {
		path []string
		want any
	}{
		{[]string{"spec", "backoffLimit"}, int64(0)},
		{[]string{"spec", "ttlSecondsAfterFinished"}, int64(60)},
		{[]string{"spec", "parallelism"}, int64(1)},
		{[]string{"spec", "completions"}, int64(1)},
		{[]string{"spec", "activeDeadlineSeconds"}, int64(2)}, // the default of count, a number
		{[]string{"spec", "template", "spec", "restartPolicy"}, "Never"},
		{[]string{"spec", "template", "spec", "nodeSelector", "kubernetes.io/arch"}, "arm64"},
		{[]string{"spec", "template", "spec", "nodeSelector", "disk"}, "ssd"},
		{[]string{"spec", "template", "metadata", "labels", names.LabelJobID}, "job1"},
		{[]string{"spec", "template", "metadata", "labels", "team"}, "builds"},
		{[]string{"spec", "template", "metadata", "finalizers"}, []any{names.PodFinalizer}},
	}
	for _, ch := range checks {
		got, ok, err := unstructured.NestedFieldNoCopy(j, ch.path...)
		if !ok || err != nil || !cmp.Equal(got, ch.want) {
			t.Errorf("%s = %#v, want %#v", strings.Join(ch.path, "."), got, ch.want)
		}
	}
	// The default TTL.
	in.TTLSecondsAfterFinished = nil
	objs, err = c.Render("fix", in)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedInt64(objs[2].Object, "spec", "ttlSecondsAfterFinished"); got != int64(DefaultTTLSecondsAfterFinished) {
		t.Errorf("default ttlSecondsAfterFinished = %d", got)
	}
	// Objects can be deep-copied (only JSON types inside).
	_ = objs[2].DeepCopy()
}

func TestValidateNumbers(t *testing.T) {
	c, err := Load(fixture(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Validate("fix", "x86_64", map[string]any{"count": 7})
	if err != nil {
		t.Fatal(err)
	}
	if got["count"] != json.Number("7") || got["msg"] != "hi" {
		t.Errorf("effective parameters %#v", got)
	}
	_, err = c.Validate("fix", "x86_64", map[string]any{"count": 1.5})
	var ie *jobs.InvalidError
	if !errors.As(err, &ie) || ie.Field != "parameters.count" {
		t.Errorf("count 1.5: %v", err)
	}
}

func TestRenderInputChecks(t *testing.T) {
	c, err := Load(fixture(nil))
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		mod     func(*Input)
		field   string // for InvalidErrors
		message string // for other errors
	}{
		"job id uppercase":  {mod: func(in *Input) { in.JobID = "Job1" }, message: "job id"},
		"job id too long":   {mod: func(in *Input) { in.JobID = strings.Repeat("a", MaxJobIDLength+1) }, message: "job id"},
		"job id empty":      {mod: func(in *Input) { in.JobID = "" }, message: "job id"},
		"namespace":         {mod: func(in *Input) { in.Namespace = "a/b" }, message: "namespace"},
		"negative ttl":      {mod: func(in *Input) { v := int32(-1); in.TTLSecondsAfterFinished = &v }, message: "negative"},
		"other task":        {mod: func(in *Input) { in.Task = "buildrpm" }, message: "input is for task"},
		"domain too long":   {mod: func(in *Input) { in.Domain = strings.Repeat("d", MaxFieldLength+1) }, field: "domain"},
		"service bad utf-8": {mod: func(in *Input) { in.Service = "\xff" }, field: "service"},
		"arch":              {mod: func(in *Input) { in.Arch = "ppc64le" }, field: "arch"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := fixtureInput()
			tc.mod(&in)
			_, err := c.Render("fix", in)
			if err == nil {
				t.Fatal("Render succeeded")
			}
			var ie *jobs.InvalidError
			if tc.field != "" {
				if !errors.As(err, &ie) || ie.Field != tc.field {
					t.Errorf("error %v, want InvalidError for %s", err, tc.field)
				}
				return
			}
			if jobs.IsInvalid(err) || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %v, want a plain error mentioning %q", err, tc.message)
			}
		})
	}
}

func TestObjectNameAndLabelValue(t *testing.T) {
	if got := ObjectName("01abc", ""); got != "omni-01abc" {
		t.Errorf("ObjectName = %q", got)
	}
	if got := ObjectName("01abc", "inputs"); got != "omni-01abc-inputs" {
		t.Errorf("ObjectName = %q", got)
	}
	for in, want := range map[string]string{"": "", "omni-web": "omni-web", "a.b_c-d": "a.b_c-d"} {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"-x", "a b", strings.Repeat("a", 64), "ü", "x\n"} {
		got := LabelValue(in)
		if !strings.HasPrefix(got, "sha256-") || len(got) != 47 || got == LabelValue(in+"!") {
			t.Errorf("LabelValue(%q) = %q", in, got)
		}
	}
}
