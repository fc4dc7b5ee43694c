package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube/names"
)

// injectionCorpus holds strings that break naive YAML or shell templating. Every one must either
// be refused by validation or come out of Render byte for byte where it belongs.
func injectionCorpus() map[string]string {
	c := map[string]string{
		"newline":              "a\nb",
		"crlf":                 "a\r\nb\r\n",
		"cr":                   "a\rb",
		"single quote":         "it's",
		"double quote":         `say "hi"`,
		"backtick":             "`id`",
		"doc start":            "---",
		"doc start lines":      "x\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: stolen\n",
		"doc end":              "...",
		"doc end lines":        "a\n...\nb",
		"template action":      "{{ .JobID }}",
		"template open":        "{{",
		"template close":       "}}",
		"template call":        `{{ printf "%s" "x" }}{{ template "x" }}`,
		"anchor":               "&a",
		"alias":                "*a",
		"anchor and aliases":   "&a [*a, *a]",
		"python tag":           "!!python/object/apply:os.system ['id']",
		"local tag":            "!<tag:yaml.org,2002:str> x",
		"binary tag":           "!!binary aGVsbG8=",
		"merge key":            "<<: *a",
		"colon space":          "key: value",
		"hash":                 "# comment",
		"value hash":           "a #b",
		"leading spaces":       "   indented",
		"trailing spaces":      "x   ",
		"tab":                  "\tx\t",
		"block scalar":         "|\n  text",
		"folded scalar":        ">-\n  text",
		"flow mapping":         "{a: 1, b: [2]}",
		"flow sequence":        "[a, b]",
		"json":                 `{"a": [1, 2], "b": "\u0000"}`,
		"command substitution": "$(rm -rf /)",
		"semicolon":            "; rm -rf /",
		"pipe":                 "| cat /etc/passwd",
		"backticks":            "`rm -rf /`",
		"and":                  "&& reboot",
		"variables":            "${HOME}$PATH$1$@",
		"glob":                 "*",
		"redirect":             "> /etc/passwd",
		"option":               "--help",
		"nul":                  "a\x00b",
		"controls":             "\x01\x02\x1b[31mred\x7f",
		"nel":                  "a\u0085b",
		"line separators":      "a\u2028b\u2029c",
		"bom":                  "\ufeffx",
		"c1 controls":          "\u0080\u009f",
		"unicode":              "ünïcødé 日本語 🚀 العربية",
		"rtl override":         "\u202egpj.exe",
		"noncharacter":         "\ufffe\uffff",
		"astral":               "\U0001F600\U00010000\U0010FFFD",
		"empty":                "",
		"yaml bool":            "yes",
		"yaml null":            "~",
		"yaml number":          "0x1F",
		"yaml date":            "2001-12-14",
		"backslashes":          `\n\"\\`,
		"url shell":            "https://example.org/$(rm${IFS}-rf${IFS}/);`id`|x&&y",
		"url quotes":           `https://example.org/a'b"c`,
		"url template":         "https://example.org/{{.JobID}}/}}{{",
		"url yaml":             "https://example.org/#&a*a!!python/object:---",
		"url newline":          "https://example.org/a\nb",
		"url option":           "https://example.org/ --output /etc/passwd",
		"long 200KiB":          strings.Repeat("a\"'\n{{ $x }}---\u0085", 200<<10/22),
		"long 1MiB":            strings.Repeat("x", 1<<20),
	}
	return c
}

// slot is the path of one string parameter: map keys and list indexes.
type slot []any

func (s slot) String() string {
	var parts []string
	for _, p := range s {
		parts = append(parts, fmt.Sprint(p))
	}
	return strings.Join(parts, ".")
}

// stringSlots lists every string parameter of a schema, through $refs, lists (index 0) and
// objects in lists.
func stringSlots(t *testing.T, raw json.RawMessage) []slot {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	resolve := func(s map[string]any) map[string]any {
		for i := 0; i < 8; i++ {
			ref, ok := s["$ref"].(string)
			if !ok {
				return s
			}
			name, ok := strings.CutPrefix(ref, "#/$defs/")
			if !ok {
				t.Fatalf("unsupported $ref %s", ref)
			}
			next := root["$defs"].(map[string]any)[name].(map[string]any)
			merged := map[string]any{}
			for k, v := range next {
				merged[k] = v
			}
			for k, v := range s {
				if k != "$ref" {
					merged[k] = v
				}
			}
			s = merged
		}
		return s
	}
	var out []slot
	var walk func(s map[string]any, at slot)
	walk = func(s map[string]any, at slot) {
		s = resolve(s)
		switch s["type"] {
		case "string":
			out = append(out, slices.Clone(at))
		case "array":
			walk(s["items"].(map[string]any), append(slices.Clone(at), 0))
		case "object":
			props, _ := s["properties"].(map[string]any)
			keys := make([]string, 0, len(props))
			for k := range props {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(props[k].(map[string]any), append(slices.Clone(at), k))
			}
		}
	}
	walk(root, nil)
	return out
}

// deepCopy copies a JSON-like tree.
func deepCopy(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// setAt puts v at the slot in params, creating a one-element list (copying the first item of an
// existing list when it is an object) when needed.
func setAt(params map[string]any, at slot, v string) {
	var cur any = params
	for i, p := range at {
		last := i == len(at)-1
		switch key := p.(type) {
		case string:
			m := cur.(map[string]any)
			if last {
				m[key] = v
				return
			}
			if _, ok := m[key]; !ok {
				if _, isIndex := at[i+1].(int); isIndex {
					m[key] = []any{}
				} else {
					m[key] = map[string]any{}
				}
			}
			next := m[key]
			if l, ok := next.([]any); ok && len(l) == 0 {
				if i+2 < len(at) {
					m[key] = []any{map[string]any{}}
				} else {
					m[key] = []any{""}
				}
			}
			cur = m[key]
		case int:
			l := cur.([]any)
			if last {
				l[key] = v
				return
			}
			cur = l[key]
		}
	}
}

// found reports whether s occurs in the objects as a whole string: a field, one line of a
// ConfigMap file, or a string inside a ConfigMap file that is JSON.
func found(objs []*unstructured.Unstructured, s string) bool {
	var strs []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			strs = append(strs, t)
		case map[string]any:
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	for _, o := range objs {
		walk(o.Object)
		if o.GetKind() != "ConfigMap" {
			continue
		}
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		for _, d := range data {
			strs = append(strs, strings.Split(strings.TrimSuffix(d, "\n"), "\n")...)
			var j any
			if json.Unmarshal([]byte(d), &j) == nil {
				walk(j)
			}
		}
	}
	return slices.Contains(strs, s)
}

// objectIDs lists kind/name of the objects.
func objectIDs(objs []*unstructured.Unstructured) []string {
	var ids []string
	for _, o := range objs {
		ids = append(ids, o.GetAPIVersion()+"/"+o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	return ids
}

// shellRun is one container that runs a shell script.
type shellRun struct {
	container string
	script    string
	rest      []string // command and args after the script
	all       []string // the whole command line
}

// shellScripts finds every container whose command line runs `sh -c` (or bash) and the script.
func shellScripts(t *testing.T, objs []*unstructured.Unstructured) []shellRun {
	t.Helper()
	var out []shellRun
	for _, o := range objs {
		if o.GetKind() != "Job" {
			continue
		}
		for _, field := range []string{"initContainers", "containers"} {
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", field)
			for _, c := range cs {
				cm := c.(map[string]any)
				var line []string
				for _, k := range []string{"command", "args"} {
					l, _, _ := unstructured.NestedStringSlice(cm, k)
					line = append(line, l...)
				}
				for i := 0; i+1 < len(line); i++ {
					base := line[i][strings.LastIndex(line[i], "/")+1:]
					if (base == "sh" || base == "bash" || base == "ash" || base == "dash") && line[i+1] == "-c" {
						if i+2 >= len(line) {
							t.Fatalf("container %s: sh -c without a script", cm["name"])
						}
						out = append(out, shellRun{container: cm["name"].(string), script: line[i+2], rest: line[i+3:], all: line})
						break
					}
				}
			}
		}
	}
	return out
}

func TestInjectionCorpus(t *testing.T) {
	c := builtin(t)
	corpus := injectionCorpus()
	names := make([]string, 0, len(corpus))
	for n := range corpus {
		names = append(names, n)
	}
	sort.Strings(names)

	for _, tk := range c.Tasks() {
		t.Run(tk.Name, func(t *testing.T) {
			benignIn := goldenInput(t, c, tk.Name)
			benign, err := c.Render(tk.Name, benignIn)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs := objectIDs(benign)
			wantScripts := shellScripts(t, benign)
			if len(wantScripts) == 0 {
				t.Fatal("found no sh -c containers; the scan is broken")
			}
			slots := stringSlots(t, tk.Schema)
			if len(slots) == 0 {
				t.Fatal("no string parameters found")
			}
			accepted, rejected := 0, 0
			for _, sl := range slots {
				for _, name := range names {
					v := corpus[name]
					params := deepCopy(benignIn.Parameters).(map[string]any)
					setAt(params, sl, v)
					in := benignIn
					in.Parameters = params
					if _, err := c.Validate(tk.Name, in.Arch, params); err != nil {
						if !jobs.IsInvalid(err) {
							t.Errorf("%s = %s: Validate error %v is not a *jobs.InvalidError", sl, name, err)
						}
						var ie *jobs.InvalidError
						if errors.As(err, &ie) && strings.Contains(ie.Reason, v) && len(v) > 3 {
							t.Errorf("%s = %s: the error repeats the value: %q", sl, name, ie.Reason)
						}
						rejected++
						continue
					}
					objs, err := c.Render(tk.Name, in)
					if err != nil {
						t.Errorf("%s = %s: Validate accepted, Render failed: %v", sl, name, err)
						continue
					}
					accepted++
					if got := objectIDs(objs); !slices.Equal(got, wantIDs) {
						t.Errorf("%s = %s: objects %v, want %v", sl, name, got, wantIDs)
					}
					if !found(objs, v) {
						t.Errorf("%s = %s: the value does not appear verbatim in the objects", sl, name)
					}
					scripts := shellScripts(t, objs)
					if len(scripts) != len(wantScripts) {
						t.Fatalf("%s = %s: %d shell containers, want %d", sl, name, len(scripts), len(wantScripts))
					}
					for i, s := range scripts {
						if s.script != wantScripts[i].script || !slices.Equal(s.rest, wantScripts[i].rest) {
							t.Errorf("%s = %s: the script of %s changed with the input", sl, name, s.container)
						}
						for _, arg := range s.all {
							if len(v) >= 4 && strings.Contains(arg, v) {
								t.Errorf("%s = %s: the value reaches the command line of shell container %s", sl, name, s.container)
							}
						}
					}
				}
			}
			t.Logf("%d string parameters; corpus values accepted %d times, refused %d times", len(slots), accepted, rejected)
			if accepted == 0 {
				t.Error("no corpus value got past validation: the render path was not exercised")
			}
		})
	}
}

// TestInjectionJobFields puts the corpus into the job's service and domain, which end up in
// labels (as LabelValue) and annotations (verbatim).
func TestInjectionJobFields(t *testing.T) {
	c := builtin(t)
	for name, v := range injectionCorpus() {
		in := goldenInput(t, c, "buildimagefromiso")
		in.Service, in.Domain = v, v
		objs, err := c.Render(in.Task, in)
		if err != nil {
			if !jobs.IsInvalid(err) {
				t.Errorf("%s: Render error %v is not a *jobs.InvalidError", name, err)
			}
			continue
		}
		if len(objs) != 2 {
			t.Fatalf("%s: %d objects", name, len(objs))
		}
		for _, o := range objs {
			metas := []map[string]any{o.Object["metadata"].(map[string]any)}
			if tm, ok, _ := unstructured.NestedMap(o.Object, "spec", "template", "metadata"); ok {
				metas = append(metas, tm)
			}
			for _, m := range metas {
				labels, _, _ := unstructured.NestedStringMap(m, "labels")
				for k, l := range labels {
					if errs := validation.IsValidLabelValue(l); len(errs) > 0 {
						t.Errorf("%s: label %s=%q is invalid: %v", name, k, l, errs)
					}
				}
				if v == "" {
					continue
				}
				ann, _, _ := unstructured.NestedStringMap(m, "annotations")
				if ann[names.AnnotationService] != v || ann[names.AnnotationDomain] != v {
					t.Errorf("%s: annotations do not carry the value verbatim", name)
				}
				if labels[names.LabelService] != LabelValue(v) {
					t.Errorf("%s: service label %q, want %q", name, labels[names.LabelService], LabelValue(v))
				}
			}
		}
	}
}
