package manifest

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// roundTrip parses `k: <quoted>` as YAML and returns the string value of k.
func roundTrip(t testing.TB, quoted string) string {
	t.Helper()
	j, err := yaml.YAMLToJSONStrict([]byte("k: " + quoted + "\n"))
	if err != nil {
		t.Fatalf("YAML of %s: %v", quoted, err)
	}
	var m map[string]string
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatalf("JSON %s: %v", j, err)
	}
	return m["k"]
}

func TestYAMLStrRoundTrips(t *testing.T) {
	for name, s := range injectionCorpus() {
		q, err := yamlStr(value(s))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := 0; i < len(q); i++ {
			if q[i] < 0x20 || q[i] > 0x7e {
				t.Fatalf("%s: output byte %#x at %d is not printable ASCII", name, q[i], i)
			}
		}
		if got := roundTrip(t, q); got != s {
			t.Errorf("%s: round trip changed the value", name)
		}
	}
}

func FuzzYAMLStr(f *testing.F) {
	for _, s := range injectionCorpus() {
		if len(s) < 4096 {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := yamlStr(s)
		if !utf8.ValidString(s) {
			if err == nil {
				t.Fatal("invalid UTF-8 accepted")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := roundTrip(t, q); got != s {
			t.Fatalf("round trip: %q -> %s -> %q", s, q, got)
		}
	})
}

func TestHelpers(t *testing.T) {
	tests := map[string]struct {
		got     func() (any, error)
		want    any
		wantErr string
	}{
		"yamlstr number":      {got: func() (any, error) { return yamlStr(json.Number("12")) }, want: `"12"`},
		"yamlstr bool":        {got: func() (any, error) { return yamlStr(true) }, want: `"true"`},
		"yamlstr nil":         {got: func() (any, error) { return yamlStr(nil) }, wantErr: "no value"},
		"yamlstr list":        {got: func() (any, error) { return yamlStr([]any{"a"}) }, wantErr: "want a string"},
		"yamlstr astral":      {got: func() (any, error) { return yamlStr("\U0001F680") }, want: `"\U0001F680"`},
		"json is a value":     {got: func() (any, error) { return jsonValue([]any{value("<a&b>"), json.Number("1")}) }, want: value(`["<a&b>",1]`)},
		"json of dict":        {got: func() (any, error) { d, _ := dict("packages", []any{value("x")}); return jsonValue(d) }, want: value(`{"packages":["x"]}`)},
		"dict odd":            {got: func() (any, error) { return dict("a") }, wantErr: "odd"},
		"b64":                 {got: func() (any, error) { return b64(value("a\x00b")) }, want: "YQBi"},
		"lines":               {got: func() (any, error) { return lines([]any{value("a"), value("b")}) }, want: value("a\nb\n")},
		"lines empty":         {got: func() (any, error) { return lines([]any{}) }, want: value("")},
		"lines with newline":  {got: func() (any, error) { return lines([]any{value("a\nb")}) }, wantErr: "line break"},
		"lines with CR":       {got: func() (any, error) { return lines([]any{value("a\rb")}) }, wantErr: "line break"},
		"lines not a list":    {got: func() (any, error) { return lines(value("a")) }, wantErr: "want a list"},
		"concat is a value":   {got: func() (any, error) { return concat("x=", value("y"), json.Number("3")) }, want: value("x=y3")},
		"value prints marker": {got: func() (any, error) { return value("secret").String(), nil }, want: unquotedMarker},
		"marker is detected": {got: func() (any, error) {
			return unquoted([]byte("a " + strings.ToUpper(unquotedMarker[1:3]) + unquotedToken)), nil
		}, want: true},
		"token found in quoted": {got: func() (any, error) { q, _ := yamlStr(unquotedMarker); return unquoted([]byte(q)), nil }, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.got()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}
