package main

import (
	"context"
	"encoding/json"
	"flag"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// tasksCmd: omnictl tasks.
func (a *app) tasksCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, args, nil, func(ctx context.Context, c *client.Client) error {
			tasks, err := c.Tasks(ctx)
			if err != nil {
				return err
			}
			raws := make([]json.RawMessage, len(tasks))
			for i, t := range tasks {
				raws[i] = t.JSON()
			}
			return a.printRaw(jsonList("tasks", raws), func() {
				t := a.newTable("NAME", "ARCHES", "STEPS", "PARAMETERS (* required)")
				for _, task := range tasks {
					t.row(task.Name, strings.Join(task.Arches, ","), strings.Join(task.Steps, ","), paramSummary(task.Schema))
				}
				t.flush()
			})
		})
	}
}

// schema is the part of a job type's JSON Schema the CLI reads.
type schema struct {
	Type       any                `json:"type"`
	Ref        string             `json:"$ref"`
	Items      *schema            `json:"items"`
	Required   []string           `json:"required"`
	Properties map[string]*schema `json:"properties"`
	Defs       map[string]*schema `json:"$defs"`
}

// parseSchema reads a job type's schema; a schema it cannot read is empty.
func parseSchema(raw json.RawMessage) *schema {
	var s schema
	_ = json.Unmarshal(raw, &s)
	return &s
}

// typeOf returns the JSON type of property schema p of root ("" when unknown), following a
// local $ref.
func (root *schema) typeOf(p *schema) string {
	if p = root.resolve(p); p == nil {
		return ""
	}
	switch t := p.Type.(type) {
	case string:
		if t == "array" {
			if it := root.typeOf(p.Items); it != "" {
				return "[]" + it
			}
		}
		return t
	case []any: // e.g. ["string", "null"]: the first that is not null
		for _, v := range t {
			if s, ok := v.(string); ok && s != "null" {
				return s
			}
		}
	}
	return ""
}

// paramSummary lists a job type's parameters as "name*:type" (required first).
func paramSummary(raw json.RawMessage) string {
	s := parseSchema(raw)
	names := slices.Sorted(maps.Keys(s.Properties))
	slices.SortStableFunc(names, func(x, y string) int {
		rx, ry := slices.Contains(s.Required, x), slices.Contains(s.Required, y)
		switch {
		case rx && !ry:
			return -1
		case ry && !rx:
			return 1
		}
		return 0
	})
	var out []string
	for _, n := range names {
		item := n
		if slices.Contains(s.Required, n) {
			item += "*"
		}
		if t := s.typeOf(s.Properties[n]); t != "" {
			item += ":" + t
		}
		out = append(out, item)
	}
	return orDash(strings.Join(out, " "))
}

// coerce turns the text of --param name=text into the JSON type the schema gives the
// parameter: numbers, booleans, arrays (a JSON array, or comma-separated items) and objects
// (JSON). Text that does not parse stays a string, for the API to name the field.
func (root *schema) coerce(name, text string) any {
	t := ""
	if root != nil {
		t = root.typeOf(root.Properties[name])
	}
	switch {
	case t == "integer":
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n
		}
	case t == "number":
		if n, err := strconv.ParseFloat(text, 64); err == nil {
			return n
		}
	case t == "boolean":
		if b, err := strconv.ParseBool(text); err == nil {
			return b
		}
	case t == "object":
		var v map[string]any
		if json.Unmarshal([]byte(text), &v) == nil {
			return v
		}
	case strings.HasPrefix(t, "[]") || t == "array":
		var v []any
		if strings.HasPrefix(strings.TrimSpace(text), "[") && json.Unmarshal([]byte(text), &v) == nil {
			return v
		}
		items := []any{}
		if text != "" {
			for _, it := range strings.Split(text, ",") {
				items = append(items, (&schema{Properties: map[string]*schema{"": root.itemsOf(name)}, Defs: root.Defs}).coerce("", strings.TrimSpace(it)))
			}
		}
		return items
	}
	return text
}

// resolve follows p's local $ref (#/$defs/name), through chains but never forever.
func (root *schema) resolve(p *schema) *schema {
	for range 8 {
		if p == nil {
			return nil
		}
		name, ok := strings.CutPrefix(p.Ref, "#/$defs/")
		if !ok {
			return p
		}
		p = root.Defs[name]
	}
	return nil
}

// itemsOf returns the items schema of array parameter name.
func (root *schema) itemsOf(name string) *schema {
	if p := root.resolve(root.Properties[name]); p != nil {
		return p.Items
	}
	return nil
}

// findTask returns the job type named name, or nil.
func findTask(tasks []*client.Task, name string) *client.Task {
	for _, t := range tasks {
		if t.Name == name {
			return t
		}
	}
	return nil
}
