package events

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// The sender presents the mounted OIDC token when there is one, read at each send.
func TestSenderToken(t *testing.T) {
	got := make(chan string, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Authorization")
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	token := filepath.Join(t.TempDir(), "token")
	s, err := SinkEnv{Sink: srv.URL, TokenFile: token}.Emitter(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := cloudevents.NewEvent()
	e.SetID("1")
	e.SetType("t")
	e.SetSource("/s")
	for _, c := range []struct{ token, want string }{{"", ""}, {"tok-1\n", "Bearer tok-1"}, {"tok-2", "Bearer tok-2"}} {
		if c.token != "" {
			if err := os.WriteFile(token, []byte(c.token), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Emit(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		if a := <-got; a != c.want {
			t.Errorf("Authorization %q, want %q", a, c.want)
		}
	}
}

// A refusal the Broker may not repeat (503 "delivery queue full", 429) is retried with backoff;
// one it will repeat (400) is not; a cancelled context ends the retries.
func TestSenderRetries(t *testing.T) {
	var answers chan int
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		code := http.StatusAccepted
		select {
		case code = <-answers:
		default:
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	s, err := NewSender(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	s.Backoff = time.Millisecond
	e := cloudevents.NewEvent()
	e.SetID("1")
	e.SetType("t")
	e.SetSource("/s")
	for _, c := range []struct {
		name    string
		answers []int
		ok      bool
		calls   int32
	}{
		{"busy then accepted", []int{503, 429, 500}, true, 4},
		{"refused on the merits", []int{400}, false, 1},
		{"busy for ever", []int{503, 503, 503, 503, 503, 503}, false, 6},
	} {
		answers = make(chan int, len(c.answers))
		for _, a := range c.answers {
			answers <- a
		}
		calls.Store(0)
		err := s.Emit(context.Background(), e)
		if (err == nil) != c.ok || calls.Load() != c.calls {
			t.Errorf("%s: Emit = %v after %d calls, want ok=%v after %d", c.name, err, calls.Load(), c.ok, c.calls)
		}
	}
	answers = make(chan int, 1)
	answers <- 503
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls.Store(0)
	if err := s.Emit(ctx, e); err == nil {
		t.Error("Emit with a cancelled context succeeded")
	}
}
