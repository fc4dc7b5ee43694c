package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/store"
)

// The numbering rule. A step's log is a sequence of lines numbered from 1, the same whether it
// is read from the cluster or from the archive:
//
//   - from the cluster, every line Reader returns is one line (a line longer than MaxLineBytes
//     is several); a line without a timestamp is kept, with the time of the line before;
//   - the archive stores exactly those lines, in that order, each ending in "\n", in chunks
//     numbered 1, 2, … without gaps.
//
// So one position serves both sources. Numberer applies the rule to a stream (log-archive
// archives through it; the query function reads the cluster through it); Archive and Cluster
// iterate numbered lines of the two sources.

// Numbered is a line of a step's log with its number.
type Numbered struct {
	// N is the line number, from 1.
	N int64
	// Time is the runtime's timestamp of the line; the archive keeps times per chunk, so its
	// lines have none (zero).
	Time time.Time
	// Text is the line without its newline. It is valid until the next call of Next.
	Text []byte
}

// Pos is a position in a step's log: the number of lines before it, with hints that let a
// reader resume there without reading the log from line 1.
type Pos struct {
	// N is the number of lines before the position.
	N int64 `json:"n"`
	// Seq and Base are the archive's hint: chunk Seq begins after line Base.
	Seq  int64 `json:"q,omitempty"`
	Base int64 `json:"b,omitempty"`
	// Time and Same are the cluster's hint: line N was stamped Time (Unix nanoseconds) and is
	// the Same-th of the lines stamped Time. A reader asks the cluster for the lines since
	// Time and skips those before it and the first Same stamped Time.
	Time int64 `json:"t,omitempty"`
	Same int64 `json:"m,omitempty"`
}

// Valid reports whether p could have been made by a reader.
func (p Pos) Valid() bool {
	return p.N >= 0 && p.Seq >= 0 && p.Base >= 0 && p.Base <= p.N && p.Same >= 0 && p.Same <= p.N &&
		(p.Time == 0) == (p.Same == 0)
}

// Numberer numbers the lines of a timestamped container log by the numbering rule.
type Numberer struct {
	r    *Reader
	n    int64
	last time.Time
	same int64
}

// NewNumberer numbers the lines of r from 1.
func NewNumberer(r io.Reader) *Numberer { return &Numberer{r: NewReader(r)} }

// Next returns the next line, or io.EOF at the end of the stream.
func (nr *Numberer) Next() (Numbered, error) {
	l, err := nr.r.Next()
	if errors.Is(err, ErrNoTimestamp) {
		l.Time, err = nr.last, nil // kept, with the time of the line before
	}
	if err != nil {
		return Numbered{}, err
	}
	if nr.n > 0 && l.Time.Equal(nr.last) {
		nr.same++
	} else {
		nr.same = 1
	}
	nr.n++
	nr.last = l.Time
	return Numbered{N: nr.n, Time: l.Time, Text: l.Text}, nil
}

// Pos is the position after the last line Next returned, with the cluster's hint.
func (nr *Numberer) Pos() Pos {
	if nr.n == 0 || nr.last.IsZero() {
		return Pos{N: nr.n}
	}
	return Pos{N: nr.n, Time: nr.last.UnixNano(), Same: nr.same}
}

// Lines iterates the numbered lines of one step's log from a position.
type Lines interface {
	// Next returns the next line, or io.EOF at the end of what the source holds now.
	Next() (Numbered, error)
	// Pos is the position after the last line Next returned (the start position before).
	Pos() Pos
	// Close releases the source.
	Close() error
}

// ChunkReader reads archived chunks (the store's LogChunks).
type ChunkReader interface {
	LogChunks(ctx context.Context, jobID, step, source string, after int64, limit int) ([]store.LogChunk, error)
}

// chunkBatch is how many chunks one store read asks for (each at most MaxChunkBytes).
const chunkBatch = 8

// ArchiveLines iterates the stored lines of a step: its archive (Archive) or what its worker
// pushed (Pushed).
type ArchiveLines struct {
	ctx                 context.Context
	store               ChunkReader
	jobID, step, source string
	pos                 Pos
	// after is the last chunk taken, base the number of lines before chunk after+1.
	after, base int64
	hinted      bool
	pending     []store.LogChunk
	// lines are the lines of chunk curSeq (which begins after line curBase) not returned yet;
	// the first of them is line next.
	lines           [][]byte
	curSeq, curBase int64
	next            int64
	gap             bool
}

var _ Lines = (*ArchiveLines)(nil)

// Archive iterates the archived lines of step of job jobID after from. Next ends with io.EOF
// at the end of what is stored, or at a gap in the chunks (an archive still being written).
// A hint that names a chunk that is not there is dropped: the lines are counted from the start.
func Archive(ctx context.Context, st ChunkReader, jobID, step string, from Pos) *ArchiveLines {
	return stored(ctx, st, jobID, step, store.LogSourceArchive, from)
}

// Pushed iterates the lines the worker pushed for step of job jobID (logs.appended) after from,
// as Archive does the archive: a separate sequence of lines, numbered from 1 by the same rule
// (every line of a push is one line; pushes in their seq order). Next ends at the first push
// not stored (yet).
func Pushed(ctx context.Context, st ChunkReader, jobID, step string, from Pos) *ArchiveLines {
	return stored(ctx, st, jobID, step, store.LogSourcePush, from)
}

func stored(ctx context.Context, st ChunkReader, jobID, step, source string, from Pos) *ArchiveLines {
	a := &ArchiveLines{ctx: ctx, store: st, jobID: jobID, step: step, source: source, pos: Pos{N: from.N, Seq: from.Seq, Base: from.Base}}
	if from.Seq > 0 && from.Base <= from.N {
		a.hinted, a.after, a.base = true, from.Seq-1, from.Base
	}
	return a
}

// Next implements Lines.
func (a *ArchiveLines) Next() (Numbered, error) {
	for len(a.lines) == 0 {
		if a.gap {
			return Numbered{}, io.EOF
		}
		if len(a.pending) == 0 {
			cs, err := a.store.LogChunks(a.ctx, a.jobID, a.step, a.source, a.after, chunkBatch)
			if err != nil {
				return Numbered{}, fmt.Errorf("read log of job %s step %s: %w", a.jobID, a.step, err)
			}
			if len(cs) == 0 {
				return Numbered{}, io.EOF
			}
			a.pending = cs
		}
		c := a.pending[0]
		a.pending = a.pending[1:]
		if c.Seq != a.after+1 {
			if a.hinted {
				// The hint names a chunk that is not there: count from the start instead.
				*a = *stored(a.ctx, a.store, a.jobID, a.step, a.source, Pos{N: a.pos.N})
				continue
			}
			a.gap = true
			continue
		}
		a.hinted = false
		lines := SplitLines(c.Data)
		start, end := a.base, a.base+int64(len(lines))
		a.after, a.base = c.Seq, end
		if end <= a.pos.N {
			continue
		}
		skip := max(a.pos.N-start, 0)
		a.lines, a.curSeq, a.curBase, a.next = lines[skip:], c.Seq, start, start+skip+1
	}
	text := a.lines[0]
	a.lines = a.lines[1:]
	n := a.next
	a.next++
	if len(a.lines) == 0 {
		a.pos = Pos{N: n, Seq: a.curSeq + 1, Base: n}
	} else {
		a.pos = Pos{N: n, Seq: a.curSeq, Base: a.curBase}
	}
	return Numbered{N: n, Text: text}, nil
}

// Pos implements Lines.
func (a *ArchiveLines) Pos() Pos { return a.pos }

// Gap reports whether the lines ended at a gap in the chunks rather than after the last one.
func (a *ArchiveLines) Gap() bool { return a.gap }

// Close implements Lines.
func (a *ArchiveLines) Close() error { return nil }

// SplitLines splits chunk data into its lines (each ends in "\n"; a last line without one
// counts).
func SplitLines(data []byte) [][]byte {
	out := make([][]byte, 0, bytes.Count(data, []byte("\n"))+1)
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i])
		data = data[i+1:]
	}
	return out
}

// Opener opens a container's timestamped log, from the lines stamped since (zero: from its
// first line). The cluster may round since down (the API takes whole seconds).
type Opener func(ctx context.Context, since time.Time) (io.ReadCloser, error)

// ClusterLines iterates the lines of a container's log on the cluster.
type ClusterLines struct {
	ctx  context.Context
	open Opener
	from Pos
	rc   io.ReadCloser
	nr   *Numberer
	// skipping: lines up to from are still being passed over.
	skipping bool
	hinted   bool
	// seen counts the lines stamped from.Time passed over; offset turns the stream's numbers
	// into the step's.
	seen, offset int64
	// Read counts the lines received from the cluster, those passed over included.
	Read int64
}

var _ Lines = (*ClusterLines)(nil)

// Cluster opens the container's log with open and iterates its lines after from. With a
// cluster hint in from, it asks only for the lines since from.Time; without one (or if the
// lines since then do not match the hint) it reads from the first line and counts. The hint
// assumes the runtime's stamps do not go back in time, which holds for a CRI log (the runtime
// stamps each line as it writes it to the file).
func Cluster(ctx context.Context, open Opener, from Pos) (*ClusterLines, error) {
	c := &ClusterLines{ctx: ctx, open: open, from: from}
	return c, c.start(from.Time > 0 && from.Same > 0 && from.N > 0)
}

func (c *ClusterLines) start(hinted bool) error {
	if c.rc != nil {
		c.rc.Close()
	}
	var since time.Time
	if hinted {
		since = time.Unix(0, c.from.Time).UTC()
	}
	rc, err := c.open(c.ctx, since)
	if err != nil {
		return err
	}
	c.rc, c.nr, c.hinted, c.skipping, c.seen, c.offset = rc, NewNumberer(rc), hinted, c.from.N > 0, 0, 0
	return nil
}

// Next implements Lines.
func (c *ClusterLines) Next() (Numbered, error) {
	for {
		l, err := c.nr.Next()
		if err != nil {
			if c.skipping && c.hinted && errors.Is(err, io.EOF) {
				// Fewer lines of that stamp than the hint says: not the log the hint was made
				// on; count from the start.
				if err := c.start(false); err != nil {
					return Numbered{}, err
				}
				continue
			}
			return Numbered{}, err
		}
		c.Read++
		if !c.skipping {
			l.N += c.offset
			return l, nil
		}
		if !c.hinted {
			if l.N >= c.from.N {
				c.skipping = false
			}
			continue
		}
		switch t := l.Time.UnixNano(); {
		case t < c.from.Time:
		case t == c.from.Time && c.seen < c.from.Same:
			if c.seen++; c.seen == c.from.Same {
				c.skipping, c.offset = false, c.from.N-l.N
			}
		default:
			// A line past the hint's stamp before its Same lines: count from the start.
			if err := c.start(false); err != nil {
				return Numbered{}, err
			}
		}
	}
}

// Pos implements Lines.
func (c *ClusterLines) Pos() Pos {
	if c.skipping {
		return c.from
	}
	p := c.nr.Pos()
	p.N += c.offset
	return p
}

// Close implements Lines.
func (c *ClusterLines) Close() error {
	if c.rc == nil {
		return nil
	}
	return c.rc.Close()
}
