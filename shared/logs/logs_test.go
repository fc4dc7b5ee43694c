package logs_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/logs"
	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

var t0 = time.Date(2026, 11, 27, 19, 0, 0, 1, time.UTC)

func TestParseLine(t *testing.T) {
	tests := map[string]struct {
		raw     string
		want    logs.Line
		wantErr bool
	}{
		"text":          {raw: "2026-11-27T19:00:00.000000001Z hello world\n", want: logs.Line{Time: t0, Text: []byte("hello world")}},
		"empty text":    {raw: "2026-11-27T19:00:00.000000001Z \n", want: logs.Line{Time: t0, Text: []byte{}}},
		"no space":      {raw: "2026-11-27T19:00:00.000000001Z\n", want: logs.Line{Time: t0}},
		"other zone":    {raw: "2026-11-27T20:00:00.000000001+01:00 x", want: logs.Line{Time: t0, Text: []byte("x")}},
		"leading space": {raw: "2026-11-27T19:00:00.000000001Z   indented\n", want: logs.Line{Time: t0, Text: []byte("  indented")}},
		"no timestamp":  {raw: "plain text\n", want: logs.Line{Text: []byte("plain text")}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := logs.ParseLine([]byte(tc.raw))
			if tc.wantErr != errors.Is(err, logs.ErrNoTimestamp) || (!tc.wantErr && err != nil) {
				t.Fatalf("ParseLine error %v, want ErrNoTimestamp: %v", err, tc.wantErr)
			}
			if !got.Time.Equal(tc.want.Time) || !bytes.Equal(got.Text, tc.want.Text) {
				t.Errorf("ParseLine = %v %q, want %v %q", got.Time, got.Text, tc.want.Time, tc.want.Text)
			}
		})
	}
}

func readAll(t *testing.T, stream string) []logs.Line {
	t.Helper()
	r := logs.NewReader(strings.NewReader(stream))
	var out []logs.Line
	for {
		l, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil && !errors.Is(err, logs.ErrNoTimestamp) {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, logs.Line{Time: l.Time, Text: append([]byte(nil), l.Text...)})
	}
}

func TestReader(t *testing.T) {
	long := strings.Repeat("x", logs.MaxLineBytes+100)
	ts := "2026-11-27T19:00:00.000000001Z "
	tests := map[string]struct {
		stream string
		want   []string
	}{
		"lines":                  {ts + "a\n" + ts + "b\n", []string{"a", "b"}},
		"last line without \\n":  {ts + "a\n" + ts + "b", []string{"a", "b"}},
		"empty stream":           {"", nil},
		"line beyond the buffer": {ts + strings.Repeat("y", 200<<10) + "\n" + ts + "z\n", []string{strings.Repeat("y", 200<<10), "z"}},
		// The part after MaxLineBytes has no timestamp of its own; it keeps the line's time.
		"line beyond MaxLineBytes": {ts + long + "\n" + ts + "z\n", nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := readAll(t, tc.stream)
			var texts []string
			var joined strings.Builder
			for _, l := range got {
				if !l.Time.Equal(t0) {
					t.Errorf("line %.20q…: time %v, want %v", l.Text, l.Time, t0)
				}
				texts = append(texts, string(l.Text))
				joined.Write(l.Text)
			}
			if tc.want == nil && strings.Contains(name, "MaxLineBytes") {
				if len(got) < 3 || joined.String() != long+"z" {
					t.Errorf("a line beyond MaxLineBytes: %d lines, joined length %d, want it split and whole", len(got), joined.Len())
				}
				return
			}
			if d := cmp.Diff(tc.want, texts); d != "" {
				t.Errorf("lines (-want +got):\n%s", d)
			}
		})
	}
}

// The same stream always gives the same chunks; chunks respect the limits and hold every line
// once, in order.
func TestChunkerDeterministic(t *testing.T) {
	var stream strings.Builder
	var want bytes.Buffer
	for i := range 20000 {
		text := fmt.Sprintf("line %d %s", i, strings.Repeat("=", i%97))
		fmt.Fprintf(&stream, "%s %s\n", t0.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), text)
		want.WriteString(text + "\n")
	}
	chunk := func() []store.LogChunk {
		c := &logs.Chunker{JobID: "j", Step: "build", Source: store.LogSourceArchive}
		var out []store.LogChunk
		for _, l := range readAll(t, stream.String()) {
			if ch, ok := c.Add(l); ok {
				out = append(out, ch)
			}
		}
		if ch, ok := c.Flush(); ok {
			out = append(out, ch)
		}
		return out
	}
	a, b := chunk(), chunk()
	if len(a) < 3 {
		t.Fatalf("%d chunks, want several", len(a))
	}
	var got bytes.Buffer
	lines := 0
	for i, c := range a {
		if c.Seq != int64(i+1) || c.JobID != "j" || c.Step != "build" || c.Source != store.LogSourceArchive {
			t.Errorf("chunk %d: seq %d key %s/%s/%s", i, c.Seq, c.JobID, c.Step, c.Source)
		}
		if len(c.Data) > logs.MaxChunkBytes || c.Lines > logs.MaxChunkLines || bytes.Count(c.Data, []byte("\n")) != c.Lines {
			t.Errorf("chunk %d: %d bytes, %d lines (%d newlines)", c.Seq, len(c.Data), c.Lines, bytes.Count(c.Data, []byte("\n")))
		}
		if c.FirstTime.After(c.LastTime) {
			t.Errorf("chunk %d: first %v after last %v", c.Seq, c.FirstTime, c.LastTime)
		}
		if !bytes.Equal(c.Data, b[i].Data) || c.Seq != b[i].Seq {
			t.Errorf("chunk %d differs between two runs over the same stream", c.Seq)
		}
		got.Write(c.Data)
		lines += c.Lines
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) || lines != 20000 {
		t.Errorf("chunks hold %d bytes, %d lines; want the %d bytes, 20000 lines of the stream", got.Len(), lines, want.Len())
	}
}

func TestChunkerLineCount(t *testing.T) {
	c := &logs.Chunker{JobID: "j", Step: "s", Source: store.LogSourcePush}
	var closed []store.LogChunk
	for i := range logs.MaxChunkLines + 1 {
		if ch, ok := c.Add(logs.Line{Time: t0, Text: []byte(fmt.Sprint(i))}); ok {
			closed = append(closed, ch)
		}
	}
	if len(closed) != 1 || closed[0].Lines != logs.MaxChunkLines {
		t.Fatalf("after %d short lines: %d chunks closed, want one of %d lines", logs.MaxChunkLines+1, len(closed), logs.MaxChunkLines)
	}
	if last, ok := c.Flush(); !ok || last.Lines != 1 || last.Seq != 2 {
		t.Errorf("Flush = %+v %v, want seq 2 with one line", last, ok)
	}
	if _, ok := c.Flush(); ok {
		t.Error("a second Flush returned a chunk")
	}
}
