package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// MaxParametersSize bounds the JSON encoding of a job's parameters (512 KiB). It keeps a job's
// ConfigMap under the 1 MiB object limit of Kubernetes and keeps stored jobs small.
const MaxParametersSize = 512 << 10

var printer = message.NewPrinter(language.English)

// compileSchema compiles the parameters schema of a task. It returns the schema and its compact
// JSON. References to other documents are refused (no loader), formats are asserted.
func compileSchema(task string, raw json.RawMessage) (*jsonschema.Schema, json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, errors.New("no schema")
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, err
	}
	top, ok := doc.(map[string]any)
	if !ok || top["type"] != "object" {
		return nil, nil, errors.New(`the schema must have "type": "object"`)
	}
	url := "https://omni.openeuler.org/schemas/tasks/" + task + "/parameters.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(url, doc); err != nil {
		return nil, nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return nil, nil, err
	}
	return sch, compact.Bytes(), nil
}

// validate normalises params to JSON values, applies defaults and checks them.
func (t *task) validate(params map[string]any) (map[string]any, error) {
	if params == nil {
		params = map[string]any{}
	}
	b, err := json.Marshal(params)
	if err != nil {
		return nil, jobs.Invalid("parameters", "not representable as JSON: %v", err)
	}
	if len(b) > MaxParametersSize {
		return nil, jobs.Invalid("parameters", "%d bytes as JSON, more than the limit of %d", len(b), MaxParametersSize)
	}
	v, err := decodeJSON(b)
	if err != nil {
		return nil, jobs.Invalid("parameters", "not representable as JSON: %v", err)
	}
	m := v.(map[string]any)
	applyDefaults(t.schema, m, 0)
	if err := t.schema.Validate(m); err != nil {
		return nil, schemaError(err)
	}
	return m, nil
}

// applyDefaults fills in missing object properties that have a default, recursively through
// present objects and list items.
func applyDefaults(s *jsonschema.Schema, v any, depth int) {
	if s == nil || depth > 32 {
		return
	}
	if s.Ref != nil {
		applyDefaults(s.Ref, v, depth+1)
	}
	for _, sub := range s.AllOf {
		applyDefaults(sub, v, depth+1)
	}
	switch t := v.(type) {
	case map[string]any:
		for name, ps := range s.Properties {
			if _, ok := t[name]; !ok {
				if d, ok := defaultOf(ps); ok {
					t[name] = d
				}
			}
			if e, ok := t[name]; ok {
				applyDefaults(ps, e, depth+1)
			}
		}
	case []any:
		items := s.Items2020
		if it, ok := s.Items.(*jsonschema.Schema); ok && items == nil {
			items = it
		}
		for i, e := range t {
			if i < len(s.PrefixItems) {
				applyDefaults(s.PrefixItems[i], e, depth+1)
			} else {
				applyDefaults(items, e, depth+1)
			}
		}
	}
}

// defaultOf returns a fresh copy of the schema's default, following $ref.
func defaultOf(s *jsonschema.Schema) (any, bool) {
	for i := 0; s != nil && i < 8; i++ {
		if s.Default != nil {
			b, err := json.Marshal(*s.Default)
			if err != nil {
				return nil, false
			}
			v, err := decodeJSON(b)
			return v, err == nil
		}
		s = s.Ref
	}
	return nil, false
}

// schemaError turns a validation failure into a *jobs.InvalidError for the first failing field
// (in path order), with a reason that does not repeat the (possibly huge) value.
func schemaError(err error) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return jobs.Invalid("parameters", "%v", err)
	}
	var leaves []*jsonschema.ValidationError
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			leaves = append(leaves, e)
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	type problem struct{ field, reason string }
	var ps []problem
	for _, l := range leaves {
		loc := slices.Clone(l.InstanceLocation)
		reason := describe(l.ErrorKind)
		switch k := l.ErrorKind.(type) {
		case *kind.Required:
			if len(k.Missing) > 0 {
				loc = append(loc, k.Missing[0])
				reason = "is required"
			}
		case *kind.AdditionalProperties:
			if len(k.Properties) > 0 {
				loc = append(loc, k.Properties[0])
				reason = "is not a known field"
			}
		}
		ps = append(ps, problem{field: strings.Join(append([]string{"parameters"}, loc...), "."), reason: reason})
	}
	if len(ps) == 0 {
		return jobs.Invalid("parameters", "%s", truncate(ve.Error()))
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].field < ps[j].field })
	return jobs.Invalid(ps[0].field, "%s", ps[0].reason)
}

// describe says what is wrong without quoting the offending value.
func describe(k jsonschema.ErrorKind) string {
	switch k := k.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be %s, not %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			b, _ := json.Marshal(w)
			want[i] = string(b)
		}
		return "must be one of " + strings.Join(want, ", ")
	case *kind.Const:
		b, _ := json.Marshal(k.Want)
		return "must be " + string(b)
	case *kind.Pattern:
		return "must match the pattern " + k.Want
	case *kind.Format:
		return "must be a valid " + k.Want
	case *kind.MinLength:
		return fmt.Sprintf("must be at least %d characters long", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("must be at most %d characters long", k.Want)
	case *kind.MinItems:
		return fmt.Sprintf("must have at least %d items", k.Want)
	case *kind.MaxItems:
		return fmt.Sprintf("must have at most %d items", k.Want)
	case *kind.UniqueItems:
		return fmt.Sprintf("items %d and %d are equal", k.Duplicates[0], k.Duplicates[1])
	case *kind.FalseSchema:
		return "is not allowed"
	}
	return truncate(k.LocalizedString(printer))
}

// truncate shortens a message to 200 bytes at a rune boundary.
func truncate(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
