package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// LogLine is one line of a step's log. N counts from 1 and is the same live and archived.
type LogLine struct {
	N    int64      `json:"n"`
	Time *time.Time `json:"time,omitempty"`
	Text string     `json:"text"`
}

// LogPage is a page of GET /v1/jobs/{id}/logs.
type LogPage struct {
	Step   string    `json:"step"`
	Lines  []LogLine `json:"lines"`
	Cursor string    `json:"cursor"`
	// Source is "archive", or "cluster" while the step is not archived yet.
	Source string `json:"source"`
	// Complete or Incomplete: nothing more will come after this page.
	Complete   bool   `json:"complete"`
	Incomplete bool   `json:"incomplete"`
	Reason     string `json:"reason"`
}

// Done reports whether the log ends with this page.
func (p *LogPage) Done() bool { return p.Complete || p.Incomplete }

// attemptQuery is the query of a log request of attempt n (0: the current one).
func attemptQuery(n int) url.Values {
	q := url.Values{}
	if n > 0 {
		q.Set("attempt", strconv.Itoa(n))
	}
	return q
}

// LogPage returns the lines of step of attempt (0: the current one) after cursor (from the
// start when empty); step "" is the job's first step.
func (c *Client) LogPage(ctx context.Context, id string, attempt int, step, after string, limit int) (*LogPage, error) {
	q := attemptQuery(attempt)
	if step != "" {
		q.Set("step", step)
	}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var p LogPage
	if _, err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/logs", q, nil, &p); err != nil {
		return nil, fmt.Errorf("read the log of %s: %w", id, err)
	}
	return &p, nil
}

// Download copies the whole archived log of step of attempt (0: the current one) to w, byte
// for byte. Before the step is archived the API answers 409 (see docs/api.md).
func (c *Client) Download(ctx context.Context, id string, attempt int, step string, w io.Writer) error {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/logs/"+url.PathEscape(step)+":download", attemptQuery(attempt), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.send(req)
	if err != nil {
		// A 409 says the step is not archived yet; its detail says what to do instead.
		return fmt.Errorf("download the log of %s step %s: %w", id, step, err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("download the log of %s step %s: %w", id, step, err)
	}
	return nil
}

// FollowEnd is the end of a followed log.
type FollowEnd struct {
	Cursor     string `json:"cursor"`
	Complete   bool   `json:"complete"`
	Incomplete bool   `json:"incomplete"`
	Reason     string `json:"reason"`
}

// Follower follows one step's log over Server-Sent Events, reconnecting with its cursor when a
// connection drops: every line is handed over once and in order.
type Follower struct {
	// Client is the API.
	Client *Client
	// ID and Step name the log; Attempt the job's attempt (0: the current one).
	ID, Step string
	Attempt  int
	// Cursor is where to start (empty: the first line); Follow keeps it at the last line handed
	// over.
	Cursor string
	// Lines receives the lines, in order, each once.
	Lines func(step string, lines []LogLine) error
	// State, if set, receives the stream's states: "waiting", "live", "archive".
	State func(step, state string)
	// Reconnected, if set, is told each time the follower reconnects, with why.
	Reconnected func(step string, err error)
	// Idle ends a connection that sent nothing (the server sends a heartbeat every 15 s) for
	// this long, to reconnect. Default: 45 s.
	Idle time.Duration
	// GiveUp ends Follow when no connection could be made for this long. Default: 5 minutes.
	GiveUp time.Duration

	// last is the number of the last line handed over (0: none, or unknown).
	last int64
}

// errStreamEnded says a connection ended before the stream's end event.
var errStreamEnded = errors.New("the stream ended before its end")

// Follow streams the log until its end (the job has ended and the step is archived), handing
// lines to f.Lines. It returns when the log has ended, ctx ends, an answer says retrying is
// pointless (4xx), or no connection succeeded for GiveUp.
func (f *Follower) Follow(ctx context.Context) (*FollowEnd, error) {
	giveUp := cmpOrDur(f.GiveUp, 5*time.Minute)
	failingSince := time.Time{}
	delay := time.Duration(0)
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		progressed, end, err := f.connect(ctx)
		if end != nil {
			return end, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil && !retryable(err) && !errors.Is(err, errStreamEnded) {
			return nil, err
		}
		if progressed {
			failingSince, delay = time.Time{}, 100*time.Millisecond
		} else {
			if failingSince.IsZero() {
				failingSince = time.Now()
			} else if time.Since(failingSince) > giveUp {
				return nil, fmt.Errorf("follow the log of %s step %s: no connection for %s: %w", f.ID, f.Step, giveUp, err)
			}
			delay = min(max(2*delay, 250*time.Millisecond), 5*time.Second)
			var e *Error
			if errors.As(err, &e) && e.RetryAfter > delay {
				delay = e.RetryAfter
			}
		}
		if f.Reconnected != nil {
			f.Reconnected(f.Step, err)
		}
	}
}

func cmpOrDur(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

// connect runs one connection: progressed says it handed over lines or a state.
func (f *Follower) connect(ctx context.Context) (progressed bool, end *FollowEnd, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := attemptQuery(f.Attempt)
	q.Set("step", f.Step)
	q.Set("follow", "true")
	if f.Cursor != "" {
		q.Set("after", f.Cursor)
	}
	req, err := f.Client.newRequest(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(f.ID)+"/logs", q, nil)
	if err != nil {
		return false, nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := f.Client.send(req)
	if err != nil {
		return false, nil, fmt.Errorf("follow the log of %s step %s: %w", f.ID, f.Step, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		// The log was already sent to its end after this cursor.
		return true, &FollowEnd{Cursor: f.Cursor, Complete: true}, nil
	}
	idle := cmpOrDur(f.Idle, 45*time.Second)
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()
	sc := bufio.NewScanner(&activityReader{r: resp.Body, touch: func() { watchdog.Reset(idle) }})
	sc.Buffer(nil, 16<<20)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			ev.add(line)
			continue
		}
		if ev.name == "" && ev.data.Len() == 0 {
			ev = sseEvent{}
			continue
		}
		done, err := f.handle(&ev)
		if err != nil {
			return progressed, nil, err
		}
		progressed = true
		if done != nil {
			return true, done, nil
		}
		ev = sseEvent{}
	}
	err = sc.Err()
	if err == nil {
		err = errStreamEnded
	}
	return progressed, nil, fmt.Errorf("follow the log of %s step %s: %w", f.ID, f.Step, err)
}

// handle acts on one event; it returns the end when the event ends the stream.
func (f *Follower) handle(ev *sseEvent) (*FollowEnd, error) {
	switch ev.name {
	case "lines":
		var b struct {
			Lines []LogLine `json:"lines"`
		}
		if err := json.Unmarshal([]byte(ev.data.String()), &b); err != nil {
			return nil, fmt.Errorf("follow the log of %s step %s: decode lines: %w", f.ID, f.Step, err)
		}
		lines, err := f.fresh(b.Lines)
		if err != nil {
			return nil, err
		}
		if len(lines) > 0 && f.Lines != nil {
			if err := f.Lines(f.Step, lines); err != nil {
				return nil, err
			}
		}
		if ev.id != "" {
			f.Cursor = ev.id
		}
	case "state":
		var s struct {
			State string `json:"state"`
		}
		_ = json.Unmarshal([]byte(ev.data.String()), &s)
		if f.State != nil {
			f.State(f.Step, s.State)
		}
	case "end":
		var end FollowEnd
		if err := json.Unmarshal([]byte(ev.data.String()), &end); err != nil {
			return nil, fmt.Errorf("follow the log of %s step %s: decode end: %w", f.ID, f.Step, err)
		}
		f.Cursor = cmpOr(end.Cursor, cmpOr(ev.id, f.Cursor))
		return &end, nil
	case "error":
		// The stream failed after it began; reconnecting with the cursor resumes.
		e := &Error{Status: http.StatusServiceUnavailable}
		_ = json.Unmarshal([]byte(ev.data.String()), e)
		e.Status = http.StatusServiceUnavailable
		return nil, fmt.Errorf("follow the log of %s step %s: %w", f.ID, f.Step, e)
	}
	return nil, nil
}

// fresh drops lines already handed over (a server that resent them) and refuses a gap.
func (f *Follower) fresh(lines []LogLine) ([]LogLine, error) {
	out := lines[:0:0]
	for _, l := range lines {
		switch {
		case f.last > 0 && l.N <= f.last:
			continue // a repeat
		case f.last > 0 && l.N != f.last+1:
			return nil, fmt.Errorf("follow the log of %s step %s: line %d came after line %d: lines are missing", f.ID, f.Step, l.N, f.last)
		}
		out = append(out, l)
		f.last = l.N
	}
	return out, nil
}

// sseEvent is an event of a text/event-stream being read.
type sseEvent struct {
	id, name string
	data     strings.Builder
}

// add reads one field line of the event (comments and unknown fields are ignored).
func (e *sseEvent) add(line string) {
	if strings.HasPrefix(line, ":") {
		return
	}
	field, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch field {
	case "id":
		e.id = value
	case "event":
		e.name = value
	case "data":
		if e.data.Len() > 0 {
			e.data.WriteByte('\n')
		}
		e.data.WriteString(value)
	}
}

// activityReader calls touch whenever bytes arrive.
type activityReader struct {
	r     io.Reader
	touch func()
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.touch()
	}
	return n, err
}
