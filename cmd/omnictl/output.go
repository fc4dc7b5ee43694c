package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// format returns the output format: the -o flag, else table.
func (a *app) format() string {
	if a.output == "" {
		return "table"
	}
	return a.output
}

// printRaw writes the JSON the API answered as -o json (indented) or -o yaml (keys in the
// API's order); for tables, table is called instead.
func (a *app) printRaw(raw json.RawMessage, table func()) error {
	switch a.format() {
	case "json":
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("format json: %w", err)
		}
		buf.WriteByte('\n')
		_, err := a.stdout.Write(buf.Bytes())
		return err
	case "yaml":
		b, err := jsonToYAML(raw)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	table()
	return nil
}

// jsonList joins raw JSON values into {"<key>": [...]}.
func jsonList(key string, raws []json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	fmt.Fprintf(&b, "{%q:[", key)
	for i, r := range raws {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(r)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// jsonToYAML converts a JSON document to YAML, keeping the order of its keys.
func jsonToYAML(raw json.RawMessage) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := yamlNode(dec)
	if err != nil {
		return nil, fmt.Errorf("format yaml: %w", err)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("format yaml: %w", err)
	}
	return buf.Bytes(), enc.Close()
}

// yamlNode reads the next JSON value of dec as a YAML node.
func yamlNode(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if t == '{' {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
		}
		for dec.More() {
			if n.Kind == yaml.MappingNode {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: fmt.Sprint(k)})
			}
			v, err := yamlNode(dec)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, v)
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
		return n, nil
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(t.String(), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: t.String()}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// table writes rows: aligned under a header on a terminal (or with -o table), tab-separated
// without a header when stdout is not a terminal and no format was asked for, for scripts.
type table struct {
	tw    *tabwriter.Writer
	plain io.Writer
}

func (a *app) newTable(header ...string) *table {
	if a.output == "" && !a.stdoutTTY {
		return &table{plain: a.stdout}
	}
	t := &table{tw: tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

// row writes one row; tabs and newlines in cells become spaces.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, c)
	}
	if t.tw != nil {
		fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
		return
	}
	fmt.Fprintln(t.plain, strings.Join(cells, "\t"))
}

func (t *table) flush() {
	if t.tw != nil {
		t.tw.Flush()
	}
}

// age formats how long ago t was, briefly ("45s", "12m", "3h", "5d"); "-" when unknown.
func age(t *time.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return brief(now.Sub(*t))
}

// brief formats a duration in its largest unit.
func brief(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// orDash returns s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
