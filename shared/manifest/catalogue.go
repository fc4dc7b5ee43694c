// Package manifest loads the job types (tasks) of templates/, validates job parameters against
// their JSON Schemas and renders the Kubernetes objects of a job.
//
// A catalogue is immutable once loaded; Source swaps in a new one on reload, so a request that
// took a catalogue keeps using it to the end. Rendering is defensive: every value reaches the
// manifests through a quoting helper (enforced on every render), and the rendered objects are
// checked and completed (kinds, names, namespace, labels, finalizer, node selector, restart and
// retry policy) before anyone sees them.
package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"text/template"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// MetadataFile is the name of the metadata file in each task folder.
const MetadataFile = "task.yaml"

// Task describes a job type as GET /v1/tasks shows it.
type Task struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Arches are the build architectures the task may run on (x86_64, aarch64).
	Arches []string `json:"arches"`
	// Steps are the names of the pod's init containers in order, then of its main containers.
	Steps []string `json:"steps"`
	// Schema is the JSON Schema (draft 2020-12) of the task's parameters, defaults included.
	Schema json.RawMessage `json:"schema"`
	// Digest identifies this revision of the job type: "sha256:" and the hex SHA-256 of its
	// task.yaml and resource templates (names and contents, in the order task.yaml lists them).
	Digest string `json:"digest"`
}

// Catalogue is a loaded, immutable set of tasks. It is safe for concurrent use.
type Catalogue struct {
	tasks map[string]*task
	names []string // sorted
}

// task is one loaded job type.
type task struct {
	Task
	schema    *jsonschema.Schema
	settings  map[string]any
	templates []*template.Template
}

// metadata is the format of task.yaml.
type metadata struct {
	Description string          `json:"description"`
	Arches      []string        `json:"arches"`
	Steps       []string        `json:"steps"`
	Resources   []string        `json:"resources"`
	Settings    json.RawMessage `json:"settings,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// Load reads every task folder at the root of fsys (folders whose name starts with "." or "_"
// are skipped, as are plain files) and checks each task completely, rendering its first schema
// example for every allowed architecture. Any problem fails the whole load.
func Load(fsys fs.FS) (*Catalogue, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("load tasks: %w", err)
	}
	c := &Catalogue{tasks: map[string]*task{}}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			continue
		}
		// Stat follows symlinks: a mounted ConfigMap links each folder into ..data.
		fi, err := fs.Stat(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("load tasks: %w", err)
		}
		if !fi.IsDir() {
			continue
		}
		t, err := loadTask(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("load task %s: %w", name, err)
		}
		c.tasks[name] = t
		c.names = append(c.names, name)
	}
	if len(c.names) == 0 {
		return nil, errors.New("load tasks: no task folders found")
	}
	sort.Strings(c.names)
	return c, nil
}

func loadTask(fsys fs.FS, name string) (*task, error) {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return nil, fmt.Errorf("task name must be a DNS label: %s", strings.Join(errs, "; "))
	}
	raw, err := fs.ReadFile(fsys, path.Join(name, MetadataFile))
	if err != nil {
		return nil, err
	}
	var md metadata
	if err := yaml.UnmarshalStrict(raw, &md); err != nil {
		return nil, fmt.Errorf("parse %s: %w", MetadataFile, err)
	}
	t := &task{Task: Task{Name: name, Description: strings.TrimSpace(md.Description), Arches: md.Arches, Steps: md.Steps}}
	digest := sha256.New()
	fmt.Fprintf(digest, "%s\x00%d\x00", MetadataFile, len(raw))
	digest.Write(raw)
	if t.Description == "" {
		return nil, errors.New("description is empty")
	}
	if err := checkArches(md.Arches); err != nil {
		return nil, err
	}
	if err := checkSteps(md.Steps); err != nil {
		return nil, err
	}

	if len(md.Settings) > 0 && string(md.Settings) != "null" {
		s, err := decodeJSON(md.Settings)
		if err != nil {
			return nil, fmt.Errorf("settings: %w", err)
		}
		m, ok := s.(map[string]any)
		if !ok {
			return nil, errors.New("settings must be a mapping")
		}
		t.settings = m
	}

	if t.schema, t.Schema, err = compileSchema(name, md.Parameters); err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}

	if len(md.Resources) == 0 {
		return nil, errors.New("resources: no templates listed")
	}
	for _, file := range md.Resources {
		if file == MetadataFile || path.Base(file) != file || !fs.ValidPath(file) {
			return nil, fmt.Errorf("resources: %q must name a template file of the task folder", file)
		}
		text, err := fs.ReadFile(fsys, path.Join(name, file))
		if err != nil {
			return nil, fmt.Errorf("resources: %w", err)
		}
		fmt.Fprintf(digest, "%s\x00%d\x00", file, len(text))
		digest.Write(text)
		tmpl, err := template.New(file).Option("missingkey=error").Funcs(funcMap).Parse(string(text))
		if err != nil {
			return nil, fmt.Errorf("resources: %w", err)
		}
		t.templates = append(t.templates, tmpl)
	}

	t.Digest = "sha256:" + hex.EncodeToString(digest.Sum(nil))

	// Render the first example for every architecture: a task that cannot render its own example
	// (or whose pod does not match its steps) is refused at load time, not at submit time.
	example, err := firstExample(t.Schema)
	if err != nil {
		return nil, err
	}
	for _, arch := range t.Arches {
		in := Input{JobID: "0123456789abcdefghjkmnpqrs", Namespace: "default", Service: "probe", Task: name, Domain: "probe", Arch: arch, Parameters: example}
		if _, err := t.render(in); err != nil {
			return nil, fmt.Errorf("render example for %s: %w", arch, err)
		}
	}
	return t, nil
}

func checkArches(arches []string) error {
	if len(arches) == 0 {
		return errors.New("arches is empty")
	}
	for i, a := range arches {
		if !slices.Contains(jobs.Arches, a) {
			return fmt.Errorf("arches: unknown architecture %q (want one of %s)", a, strings.Join(jobs.Arches, ", "))
		}
		if slices.Contains(arches[:i], a) {
			return fmt.Errorf("arches: %s listed twice", a)
		}
	}
	return nil
}

func checkSteps(steps []string) error {
	if len(steps) == 0 {
		return errors.New("steps is empty")
	}
	for i, s := range steps {
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
			return fmt.Errorf("steps: %q is not a container name: %s", s, strings.Join(errs, "; "))
		}
		if slices.Contains(steps[:i], s) {
			return fmt.Errorf("steps: %s listed twice", s)
		}
	}
	return nil
}

// firstExample returns examples[0] of the parameters schema.
func firstExample(schema json.RawMessage) (map[string]any, error) {
	var s struct {
		Examples []map[string]any `json:"examples"`
	}
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, fmt.Errorf("parameters: %w", err)
	}
	if len(s.Examples) == 0 || s.Examples[0] == nil {
		return nil, errors.New("parameters: the schema needs an examples list whose first entry is a valid parameter object")
	}
	return s.Examples[0], nil
}

// decodeJSON decodes one JSON value, numbers as json.Number.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// Tasks returns every task, sorted by name. The result is a copy the caller may keep.
func (c *Catalogue) Tasks() []Task {
	out := make([]Task, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.tasks[n].public())
	}
	return out
}

// Task returns the task called name.
func (c *Catalogue) Task(name string) (Task, bool) {
	t, ok := c.tasks[name]
	if !ok {
		return Task{}, false
	}
	return t.public(), true
}

// Digest returns the digest of the job type's current revision ("" for an unknown task).
func (c *Catalogue) Digest(task string) string {
	if t, ok := c.tasks[task]; ok {
		return t.Digest
	}
	return ""
}

// Steps returns the step names of the task, or nil for an unknown task.
func (c *Catalogue) Steps(task string) []string {
	t, ok := c.tasks[task]
	if !ok {
		return nil
	}
	return slices.Clone(t.Steps)
}

func (t *task) public() Task {
	return Task{
		Name:        t.Name,
		Description: t.Description,
		Arches:      slices.Clone(t.Arches),
		Steps:       slices.Clone(t.Steps),
		Schema:      slices.Clone(t.Schema),
		Digest:      t.Digest,
	}
}

// lookup finds a task and checks the architecture, with errors that name the field.
func (c *Catalogue) lookup(name, arch string) (*task, error) {
	t, ok := c.tasks[name]
	if !ok {
		return nil, jobs.Invalid("task", "unknown task %q (known: %s)", name, strings.Join(c.names, ", "))
	}
	if !slices.Contains(t.Arches, arch) {
		return nil, jobs.Invalid("arch", "task %s runs on %s, not %q", name, strings.Join(t.Arches, ", "), arch)
	}
	return t, nil
}

// Validate checks params against the task's schema for a job on arch, applies the schema's
// defaults and returns the effective parameters (a new map; params is not modified). Numbers in
// the result are json.Number. Errors are *jobs.InvalidError naming the field: "task", "arch" or
// "parameters.<path>" (path elements joined by dots, list indexes as numbers).
func (c *Catalogue) Validate(task, arch string, params map[string]any) (map[string]any, error) {
	t, err := c.lookup(task, arch)
	if err != nil {
		return nil, err
	}
	return t.validate(params)
}
