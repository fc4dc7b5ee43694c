package events

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

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
