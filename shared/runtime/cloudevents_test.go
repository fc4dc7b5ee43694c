package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Every handler error reaches the Broker as the status its kind calls for: 400 is never retried,
// the others are.
func TestEventStatus(t *testing.T) {
	for name, c := range map[string]struct {
		err  error
		code int
	}{
		"nil":             {nil, 200},
		"ACK":             {protocol.ResultACK, 200},
		"explicit 202":    {cehttp.NewResult(202, "accepted"), 202},
		"explicit 410":    {cehttp.NewResult(410, "gone"), 410},
		"invalid":         {jobs.Invalid("data", "not a job"), 400},
		"wrapped invalid": {fmt.Errorf("decode: %w", jobs.Invalid("data", "x")), 400},
		"conflict":        {fmt.Errorf("update: %w", jobs.ErrConflict), 409},
		"not found":       {fmt.Errorf("job x: %w", jobs.ErrNotFound), 404},
		"too many":        {fmt.Errorf("push: %w", jobs.ErrTooMany), 429},
		"unavailable":     {fmt.Errorf("store: %w", jobs.ErrUnavailable), 503},
		"deadline":        {fmt.Errorf("store: %w", context.DeadlineExceeded), 503},
		"anything else":   {errors.New("boom"), 500},
	} {
		t.Run(name, func(t *testing.T) {
			code, msg := EventStatus(c.err)
			if code != c.code {
				t.Errorf("EventStatus(%v) = %d, want %d", c.err, code, c.code)
			}
			if (code >= 300) != (msg != "") {
				t.Errorf("EventStatus(%v) message %q: want a message exactly for failures", c.err, msg)
			}
		})
	}
}

// The edge answers with the mapped status and the error text (kept by the Broker in a dead
// letter), replies an event in binary mode, and refuses what is not a CloudEvent with 400.
func TestCloudEvents(t *testing.T) {
	reply := event.New()
	reply.SetID("r1")
	reply.SetType("org.openeuler.omni.job.changed")
	reply.SetSource("/omni/test")
	srv := httptest.NewServer(CloudEvents(func(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
		switch e.ID() {
		case "reply":
			return &reply, nil
		case "invalid":
			return nil, jobs.Invalid("data", "not a job")
		case "down":
			return nil, fmt.Errorf("store: %w", jobs.ErrUnavailable)
		}
		return nil, nil
	}))
	t.Cleanup(srv.Close)
	for id, want := range map[string]struct {
		code      int
		body      string
		replyType string
	}{
		"ok":      {200, "", ""},
		"reply":   {200, "", "org.openeuler.omni.job.changed"},
		"invalid": {400, "invalid data: not a job", ""},
		"down":    {503, "store: unavailable", ""},
	} {
		t.Run(id, func(t *testing.T) {
			e := event.New()
			e.SetID(id)
			e.SetType("test")
			e.SetSource("/test")
			req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
			if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != want.code || !strings.Contains(string(b), want.body) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, b, want.code, want.body)
			}
			if got := resp.Header.Get("Ce-Type"); got != want.replyType {
				t.Errorf("reply type %q, want %q", got, want.replyType)
			}
		})
	}
	t.Run("not a CloudEvent", func(t *testing.T) {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"hello":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("got %d, want 400", resp.StatusCode)
		}
	})
}
