package manifest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"
)

// value is a string from the job's input (parameters, settings, job fields) as the templates see
// it. Printed by a template without a helper it turns into unquotedMarker, which Render rejects:
// that is how "every value goes through a quoting helper" is enforced on every render.
type value string

// unquotedToken is random per process, so no input can contain it; unquotedMarker wraps it in
// NUL bytes, which no helper emits (yamlstr escapes them). Render refuses output that contains
// either: the token survives escapers such as html or printf %q, the NUL survives truncation.
var (
	unquotedToken  = newToken()
	unquotedMarker = "\x00" + unquotedToken + "\x00"
)

func newToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return "omni-unquoted-" + hex.EncodeToString(b)
}

// unquoted reports whether rendered output contains a value printed without a helper.
func unquoted(out []byte) bool {
	return bytes.IndexByte(out, 0) >= 0 || bytes.Contains(out, []byte(unquotedToken))
}

// String makes text/template, fmt and printf print the marker instead of the value.
func (value) String() string { return unquotedMarker }

// funcMap holds the helpers available to templates. Only they turn a value into text:
//
//   - yamlstr: a string (or number, bool) as a YAML double-quoted scalar, printable ASCII only;
//     every string survives the YAML round trip byte for byte.
//   - json: any value as JSON text. The result is a value again (JSON is not always YAML-safe);
//     quote it with yamlstr, e.g. a file in a ConfigMap: {{ yamlstr (json .Parameters.x) }}.
//   - b64: standard base64 of a string, for Secret data and ConfigMap binaryData.
//   - lines: a list of strings, one per line with a trailing newline; fails on an element with a
//     line break. The result is a value: quote it.
//   - concat: the arguments joined without separator. The result is a value: quote it.
//   - dict: a map from key/value pairs, to build input for json.
var funcMap = template.FuncMap{
	"yamlstr": yamlStr,
	"json":    jsonValue,
	"b64":     b64,
	"lines":   lines,
	"concat":  concat,
	"dict":    dict,
}

// plain turns a template argument back into an ordinary Go value: values become strings, in
// nested maps and slices too.
func plain(v any) any {
	switch t := v.(type) {
	case value:
		return string(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = plain(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = plain(e)
		}
		return out
	}
	return v
}

// scalar returns the text of a string-like argument.
func scalar(helper string, v any) (string, error) {
	switch t := v.(type) {
	case value:
		return string(t), nil
	case string:
		return t, nil
	case json.Number:
		return t.String(), nil
	case bool:
		return strconv.FormatBool(t), nil
	case int:
		return strconv.Itoa(t), nil
	case int64:
		return strconv.FormatInt(t, 10), nil
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64), nil
	case nil:
		return "", fmt.Errorf("%s: no value", helper)
	}
	return "", fmt.Errorf("%s: want a string, got %T", helper, v)
}

// yamlStr quotes s as a YAML double-quoted scalar that contains printable ASCII only. JSON
// quoting is not enough: YAML 1.1 parsers fold a raw U+0085, U+2028 or U+2029 into a space and
// reject DEL and C1 control characters, so everything outside printable ASCII is escaped
// (\uXXXX, or \UXXXXXXXX beyond the BMP: YAML has no surrogate pairs).
func yamlStr(v any) (string, error) {
	s, err := scalar("yamlstr", v)
	if err != nil {
		return "", err
	}
	if !utf8.ValidString(s) {
		return "", errors.New("yamlstr: not valid UTF-8")
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// jsonValue encodes v as compact JSON (without HTML escaping).
func jsonValue(v any) (value, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(plain(v)); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return value(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), nil
}

// b64 encodes a string with standard base64.
func b64(v any) (string, error) {
	s, err := scalar("b64", v)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString([]byte(s)), nil
}

// lines joins a list of strings into newline-terminated lines.
func lines(v any) (value, error) {
	if v == nil {
		return "", nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return "", fmt.Errorf("lines: want a list, got %T", v)
	}
	var b strings.Builder
	for i := range rv.Len() {
		s, err := scalar("lines", rv.Index(i).Interface())
		if err != nil {
			return "", err
		}
		if strings.ContainsAny(s, "\n\r") {
			return "", fmt.Errorf("lines: element %d contains a line break", i)
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return value(b.String()), nil
}

// concat joins its arguments.
func concat(args ...any) (value, error) {
	var b strings.Builder
	for _, a := range args {
		s, err := scalar("concat", a)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return value(b.String()), nil
}

// dict builds a map from alternating keys and values.
func dict(kv ...any) (map[string]any, error) {
	if len(kv)%2 != 0 {
		return nil, errors.New("dict: odd number of arguments")
	}
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		k, err := scalar("dict", kv[i])
		if err != nil {
			return nil, err
		}
		m[k] = kv[i+1]
	}
	return m, nil
}

// taint wraps every string in v (a JSON-like tree) as a value.
func taint(v any) any {
	switch t := v.(type) {
	case string:
		return value(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = taint(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = taint(e)
		}
		return out
	}
	return v
}
