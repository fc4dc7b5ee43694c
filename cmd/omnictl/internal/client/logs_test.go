package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// sseServer serves a follow stream of lines 1..total in batches, from the `after` cursor
// ("c<n>": after line n); each connection sends at most perConn lines and then drops (or, with
// resend, first repeats the line before the cursor, as a misbehaving server might).
type sseServer struct {
	total, perConn int
	resend         bool
	gap            bool // skip a line on the second connection

	mu      sync.Mutex
	afters  []string
	answers []int // status codes to answer before streaming, one per connection
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	after := r.URL.Query().Get("after")
	s.afters = append(s.afters, after)
	conn := len(s.afters)
	var code int
	if len(s.answers) > 0 {
		code, s.answers = s.answers[0], s.answers[1:]
	}
	s.mu.Unlock()
	if code != 0 {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"title":%q,"status":%d,"detail":"try again"}`, http.StatusText(code), code)
		return
	}
	if r.Header.Get("Authorization") == "" || r.URL.Query().Get("follow") != "true" || r.URL.Query().Get("step") != "build" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var from int
	if after != "" {
		fmt.Sscanf(after, "c%d", &from)
	}
	if from >= s.total {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 2000\n\nevent: state\ndata: {\"state\":\"live\"}\n\n: heartbeat\n\n")
	start := from + 1
	if s.resend && from > 0 {
		start = from // the line before the cursor again
	}
	if s.gap && conn == 2 {
		start = from + 2
	}
	sent := 0
	for n := start; n <= s.total; n++ {
		if sent == s.perConn {
			return // dropped mid-stream
		}
		fmt.Fprintf(w, "id: c%d\nevent: lines\ndata: {\"lines\":[{\"n\":%d,\"text\":\"line %d\"}]}\n\n", n, n, n)
		sent++
		w.(http.Flusher).Flush()
	}
	fmt.Fprintf(w, "id: c%d\nevent: end\ndata: {\"cursor\":\"c%d\",\"complete\":true}\n\n", s.total, s.total)
}

func TestFollowResumes(t *testing.T) {
	for name, tc := range map[string]struct {
		srv        *sseServer
		cursor     string
		wantLines  int
		wantAfters []string
		wantErr    string
	}{
		"one connection": {
			srv: &sseServer{total: 5, perConn: 100}, wantLines: 5, wantAfters: []string{""},
		},
		"dropped twice, resumed with the cursor": {
			srv: &sseServer{total: 7, perConn: 3}, wantLines: 7, wantAfters: []string{"", "c3", "c6"},
		},
		"a server that repeats a line: handed over once": {
			srv: &sseServer{total: 7, perConn: 3, resend: true}, wantLines: 7, wantAfters: []string{"", "c3", "c5"},
		},
		"a server that skips a line: an error, not a silent gap": {
			srv: &sseServer{total: 7, perConn: 3, gap: true}, wantAfters: []string{"", "c3"},
			wantErr: "line 5 came after line 3",
		},
		"busy, then unavailable, then served": {
			srv: &sseServer{total: 2, perConn: 5, answers: []int{429, 503}}, wantLines: 2, wantAfters: []string{"", "", ""},
		},
		"resumed after the end: 204": {
			srv: &sseServer{total: 4, perConn: 5}, cursor: "c4", wantAfters: []string{"c4"},
		},
		"not found: no retry": {
			srv: &sseServer{total: 2, perConn: 5, answers: []int{404}}, wantAfters: []string{""}, wantErr: "404 Not Found",
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(tc.srv)
			defer srv.Close()
			var got []string
			f := &Follower{
				Client: New(srv.URL, "u", "p"), ID: "j1", Step: "build", Cursor: tc.cursor,
				Lines: func(step string, lines []LogLine) error {
					for _, l := range lines {
						got = append(got, l.Text)
					}
					return nil
				},
				GiveUp: time.Minute,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			end, err := f.Follow(ctx)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Follow: %v, want an error with %q", err, tc.wantErr)
				}
			} else if err != nil || !end.Complete {
				t.Fatalf("Follow: %+v, %v", end, err)
			}
			var want []string
			for n := range tc.wantLines {
				want = append(want, fmt.Sprintf("line %d", n+1))
			}
			if tc.wantErr == "" {
				if d := cmp.Diff(want, got); d != "" {
					t.Errorf("lines (-want +got):\n%s", d)
				}
			}
			if d := cmp.Diff(tc.wantAfters, tc.srv.afters); d != "" {
				t.Errorf("after= of each connection (-want +got):\n%s", d)
			}
		})
	}
}

func TestErrorNamesTheField(t *testing.T) {
	for name, tc := range map[string]struct {
		e    Error
		want string
	}{
		"field in the detail": {
			Error{Status: 400, Title: "Bad Request", Detail: "invalid parameters.srpmUrl: does not match pattern", Field: "parameters.srpmUrl"},
			"400 Bad Request: invalid parameters.srpmUrl: does not match pattern",
		},
		"field only in its own member": {
			Error{Status: 400, Title: "Bad Request", Detail: "bad value", Field: "arch"},
			"400 Bad Request: field arch: bad value",
		},
		"several lines folded": {
			Error{Status: 503, Detail: "store\nunavailable"},
			"503 Service Unavailable: store unavailable",
		},
	} {
		t.Run(name, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestProblemAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"title":"Bad Request","status":400,"detail":"invalid task: unknown job type \"x\"","field":"task"}`)
	}))
	defer srv.Close()
	_, err := New(srv.URL, "u", "p").Submit(context.Background(), SubmitRequest{Service: "s", Task: "x", Arch: "x86_64"}, "")
	if StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), `submit: 400 Bad Request: invalid task: unknown job type "x"`) {
		t.Errorf("Submit: %v", err)
	}
}
