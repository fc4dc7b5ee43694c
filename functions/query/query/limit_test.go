package query

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
)

// limitFixture serves the query routes with a FollowLimit around the log fixture's handler;
// the principal is the viewer of service svc named by the X-Test-User header.
func limitFixture(t *testing.T, l *FollowLimit) (*logFixture, *httptest.Server) {
	t.Helper()
	f := newLogFixture(t)
	// Quiet streams: nothing to poll often while hundreds are open.
	f.h.PollMin, f.h.PollMax, f.h.LivePoll = time.Second, time.Second, time.Second
	h := &Handler{Logs: f.h, Follows: l}
	mux := http.NewServeMux()
	h.Routes(mux, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p := &auth.Principal{User: r.Header.Get("X-Test-User"), Role: auth.RoleViewer, Services: []string{"svc"}}
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func openFollow(t *testing.T, srv *httptest.Server, user string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/jobs/job1/logs?step=build&follow=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-User", user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func wantTooMany(t *testing.T, resp *http.Response, what string) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s: %d, Retry-After %q; want 429 with Retry-After", what, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// 300 follow streams are open at once; the next one is refused with 429 and Retry-After, and
// a closed stream frees its slot. Pages (no follow) are not limited.
func TestFollowLimitTotal(t *testing.T) {
	const total = 300
	l := &FollowLimit{Total: total}
	_, srv := limitFixture(t, l)
	streams := make([]*http.Response, total)
	var wg sync.WaitGroup
	for i := range total {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/jobs/job1/logs?step=build&follow=true", nil)
			req.Header.Set("X-Test-User", fmt.Sprintf("user%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			streams[i] = resp
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, r := range streams {
			if r != nil {
				r.Body.Close()
			}
		}
	})
	for i, r := range streams {
		if r == nil || r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %v, want 200", i, r)
		}
	}
	if n := l.Open(); n != total {
		t.Fatalf("%d streams open, want %d", n, total)
	}
	wantTooMany(t, openFollow(t, srv, "late"), "stream 301")

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/jobs/job1/logs?step=build", nil)
	req.Header.Set("X-Test-User", "late")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a page past the follow limit: %d, want 200", resp.StatusCode)
	}

	streams[0].Body.Close()
	deadline, tick := time.After(10*time.Second), time.NewTicker(5*time.Millisecond)
	defer tick.Stop()
	for l.Open() >= total {
		select {
		case <-deadline:
			t.Fatal("a closed stream did not free its slot within 10s")
		case <-tick.C:
		}
	}
	if r := openFollow(t, srv, "late"); r.StatusCode != http.StatusOK {
		t.Errorf("after a stream closed: %d, want 200", r.StatusCode)
	}
}

// One user holds at most PerUser streams; others still get theirs.
func TestFollowLimitPerUser(t *testing.T) {
	_, srv := limitFixture(t, &FollowLimit{PerUser: 3, Total: 100, RetryAfter: 2500 * time.Millisecond})
	for i := range 3 {
		if r := openFollow(t, srv, "greedy"); r.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d, want 200", i, r.StatusCode)
		}
	}
	r := openFollow(t, srv, "greedy")
	wantTooMany(t, r, "the 4th stream of one user")
	if got := r.Header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After %q, want 3 (2.5s rounded up)", got)
	}
	if r := openFollow(t, srv, "someone-else"); r.StatusCode != http.StatusOK {
		t.Errorf("another user's stream: %d, want 200", r.StatusCode)
	}
}
