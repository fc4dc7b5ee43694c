// Package logs reads container logs as the API server serves them with timestamps
// ("<RFC 3339 nano> <text>" per line) and cuts them into chunks for the store. Chunking is
// deterministic (the same stream always gives the same chunks with the same sequence numbers), so
// an archive that restarts from the beginning stores every line exactly once.
package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// Line is one log line.
type Line struct {
	// Time is the timestamp the container runtime gave the line.
	Time time.Time
	// Text is the line without its timestamp and without the trailing newline.
	Text []byte
}

// ErrNoTimestamp means a line of the stream does not start with a timestamp. ParseLine and
// Reader.Next still return the line, whole, as Text (with a zero Time), so a caller may keep it.
var ErrNoTimestamp = errors.New("log line without a timestamp")

// ParseLine splits a line of a timestamped log stream ("2026-11-27T19:00:00.000000001Z text").
func ParseLine(raw []byte) (Line, error) {
	var p stampParser
	return p.parse(raw)
}

// stampParser parses the lines of one stream. Consecutive lines nearly always share the
// timestamp's date, time and zone up to the second; the parser keeps the last one it parsed
// with time.Parse and reads only the fraction of a second of a line that shares it.
type stampParser struct {
	prefix []byte    // "2026-11-27T19:00:00" of the last full parse
	suffix []byte    // its zone: "Z" or "+01:00"
	sec    time.Time // that second, UTC
}

func (p *stampParser) parse(raw []byte) (Line, error) {
	raw = bytes.TrimSuffix(raw, []byte("\n"))
	ts, text, ok := bytes.Cut(raw, []byte(" "))
	if !ok {
		ts, text = raw, nil
	}
	if t, ok := p.fast(ts); ok {
		return Line{Time: t, Text: text}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{Text: raw}, fmt.Errorf("%w: %q", ErrNoTimestamp, truncate(raw, 80))
	}
	t = t.UTC()
	if len(ts) >= 20 {
		rest := ts[19:]
		if rest[0] == '.' {
			i := 1
			for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
				i++
			}
			rest = rest[i:]
		}
		p.prefix, p.suffix = append(p.prefix[:0], ts[:19]...), append(p.suffix[:0], rest...)
		p.sec = t.Truncate(time.Second)
	}
	return Line{Time: t, Text: text}, nil
}

// fast parses ts if it has the second and zone of the last full parse: then only its fraction
// (".123456789", 1 to 9 digits, or none) is read.
func (p *stampParser) fast(ts []byte) (time.Time, bool) {
	if p.prefix == nil || len(ts) < 19+len(p.suffix) || !bytes.Equal(ts[:19], p.prefix) || !bytes.HasSuffix(ts, p.suffix) {
		return time.Time{}, false
	}
	frac := ts[19 : len(ts)-len(p.suffix)]
	if len(frac) == 0 {
		return p.sec, true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return time.Time{}, false
	}
	ns := 0
	for _, c := range frac[1:] {
		if c < '0' || c > '9' {
			return time.Time{}, false
		}
		ns = ns*10 + int(c-'0')
	}
	for range 10 - len(frac) {
		ns *= 10
	}
	return p.sec.Add(time.Duration(ns)), true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// MaxLineBytes bounds one line; longer lines are split (the API server already splits at 16 KiB
// in CRI logs, this guards the reader).
const MaxLineBytes = 1 << 20

// Reader reads Lines from a timestamped stream.
type Reader struct {
	r     *bufio.Reader
	stamp stampParser
	buf   []byte // a line that did not fit the reader's buffer
	// cont is set while the rest of a line longer than MaxLineBytes is being read: its pieces
	// carry no timestamp of their own and get contTime.
	cont     bool
	contTime time.Time
}

// NewReader reads lines of the timestamped log stream r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Next returns the next line, or io.EOF at the end of the stream. A final line without a
// newline is returned too. A line longer than MaxLineBytes comes as several Lines with the
// same Time. A line without a timestamp is returned with an error wrapping ErrNoTimestamp.
// The Line's Text is valid until the next call of Next (it may point into the reader's buffer).
func (r *Reader) Next() (Line, error) {
	part, err := r.r.ReadSlice('\n')
	if err == nil {
		return r.line(part, false) // the common case: the line is in the buffer, no copy
	}
	buf := append(r.buf[:0], part...)
	defer func() { r.buf = buf[:0] }()
	for {
		switch {
		case err == nil:
			return r.line(buf, false)
		case errors.Is(err, bufio.ErrBufferFull) && len(buf) < MaxLineBytes:
			part, err = r.r.ReadSlice('\n')
			buf = append(buf, part...)
		case errors.Is(err, bufio.ErrBufferFull):
			return r.line(buf, true)
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return r.line(buf, false)
		default:
			return Line{}, err
		}
	}
}

// line turns raw into a Line; more says the line goes on in the next piece.
func (r *Reader) line(raw []byte, more bool) (Line, error) {
	var l Line
	var err error
	if r.cont {
		l = Line{Time: r.contTime, Text: bytes.TrimSuffix(raw, []byte("\n"))}
	} else {
		l, err = r.stamp.parse(raw)
	}
	r.cont, r.contTime = more, l.Time
	return l, err
}

// Chunk limits. A chunk closes when adding a line would pass MaxChunkBytes or MaxChunkLines.
const (
	MaxChunkBytes = 256 << 10
	MaxChunkLines = 4096
)

// Chunker groups lines into chunks of one (job, step, source), numbering them from 1.
type Chunker struct {
	JobID, Step, Source string
	cur                 store.LogChunk
	seq                 int64
	size                int // of the last chunk closed: the room a new one starts with
}

// Add adds l and returns the chunk it closed, if any.
func (c *Chunker) Add(l Line) (store.LogChunk, bool) {
	var out store.LogChunk
	closed := false
	if c.cur.Lines > 0 && (len(c.cur.Data)+len(l.Text)+1 > MaxChunkBytes || c.cur.Lines >= MaxChunkLines) {
		out, closed = c.cur, true
		c.cur, c.size = store.LogChunk{}, len(out.Data)
	}
	if c.cur.Lines == 0 {
		c.seq++
		c.cur = store.LogChunk{JobID: c.JobID, Step: c.Step, Source: c.Source, Seq: c.seq, FirstTime: l.Time,
			Data: make([]byte, 0, min(MaxChunkBytes, max(len(l.Text)+1, c.size)))}
	}
	c.cur.Data = append(append(c.cur.Data, l.Text...), '\n')
	c.cur.Lines++
	c.cur.LastTime = l.Time
	return out, closed
}

// Flush returns the open chunk, if it holds any line.
func (c *Chunker) Flush() (store.LogChunk, bool) {
	if c.cur.Lines == 0 {
		return store.LogChunk{}, false
	}
	out := c.cur
	c.cur = store.LogChunk{}
	return out, true
}
