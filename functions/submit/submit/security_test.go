package submit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
)

// serve serves h as its function does, with submitter as every request's principal.
func serve(t *testing.T, h *Handler) *httptest.Server {
	t.Helper()
	h.authn = func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), submitter)))
		})
	}
	mux := http.NewServeMux()
	h.Function().Routes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// POST /v1/jobs takes only JSON: a browser's cross-site form post (no Content-Type, text/plain,
// a form encoding) is 415 and creates nothing.
func TestSubmitNeedsJSON(t *testing.T) {
	h, _, ev := newHandler(t)
	srv := serve(t, h)
	body, _ := json.Marshal(request())
	for name, ctype := range map[string]string{"none": "", "text/plain": "text/plain", "form": "application/x-www-form-urlencoded"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/jobs", strings.NewReader(string(body)))
		req.Header.Del("Content-Type")
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("Content-Type %s: %d, want 415", name, resp.StatusCode)
		}
	}
	if len(ev.got) != 0 {
		t.Errorf("%d jobs created, want none", len(ev.got))
	}
}

// The answer and the job.created event show the callback URL without credentials or query; the
// store keeps it whole (for notify).
func TestCallbackRedactedInAnswerAndEvent(t *testing.T) {
	h, _, ev := newHandler(t)
	srv := serve(t, h)
	r := request()
	r.Callback = "https://ci:hunter2@hooks.example.org/omni?token=s3cret"
	body, _ := json.Marshal(r)
	resp, err := http.Post(srv.URL+"/v1/jobs", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
	var j struct{ ID, Callback string }
	_ = json.Unmarshal(b, &j)
	if j.Callback != "https://hooks.example.org/omni" {
		t.Errorf("answer's callback %q, want it redacted", j.Callback)
	}
	if len(ev.got) != 1 || strings.Contains(string(ev.got[0].Data()), "s3cret") || strings.Contains(string(ev.got[0].Data()), "hunter2") {
		t.Errorf("events %d; the job.created data shows the callback's secrets", len(ev.got))
	}
	stored, err := h.Store.GetJob(t.Context(), j.ID)
	if err != nil || stored.Callback != r.Callback {
		t.Errorf("stored callback %q (%v), want the whole URL", stored.Callback, err)
	}
}

// A browser's cross-site request may not change jobs (a rerun has no body, so a form of another
// site could send one with the credentials the browser keeps for the console): 403, and nothing
// is created. The console's own requests (same-origin) and API clients (no header) pass.
func TestCrossSiteRequestsRefused(t *testing.T) {
	h, _, ev := newHandler(t)
	srv := serve(t, h)
	body, _ := json.Marshal(request())
	resp, err := http.Post(srv.URL+"/v1/jobs", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var j struct{ ID string }
	_ = json.NewDecoder(resp.Body).Decode(&j)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	tests := map[string]struct {
		method, path, ctype, body string
		header                    []string
		want                      int
	}{
		"cross-site form rerun": {method: http.MethodPost, path: "/v1/jobs/" + j.ID + ":rerun", ctype: "application/x-www-form-urlencoded", header: []string{"Sec-Fetch-Site", "cross-site"}, want: 403},
		"same-site rerun":       {method: http.MethodPost, path: "/v1/jobs/" + j.ID + ":rerun", header: []string{"Sec-Fetch-Site", "same-site"}, want: 403},
		"old browser's rerun":   {method: http.MethodPost, path: "/v1/jobs/" + j.ID + ":rerun", header: []string{"Origin", "https://evil.example"}, want: 403},
		"cross-site submit":     {method: http.MethodPost, path: "/v1/jobs", ctype: "application/json", body: string(body), header: []string{"Sec-Fetch-Site", "cross-site"}, want: 403},
		"cross-site cancel":     {method: http.MethodDelete, path: "/v1/jobs/" + j.ID, header: []string{"Sec-Fetch-Site", "cross-site"}, want: 403},
		"the console's rerun":   {method: http.MethodPost, path: "/v1/jobs/" + j.ID + ":rerun", header: []string{"Sec-Fetch-Site", "same-origin"}, want: 201},
		"an API client's rerun": {method: http.MethodPost, path: "/v1/jobs/" + j.ID + ":rerun", want: 201},
	}
	created := len(ev.got)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for i := 0; i+1 < len(tc.header); i += 2 {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, b, tc.want)
			}
			if tc.want == 403 && resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("refusal as %q, want a problem document", resp.Header.Get("Content-Type"))
			}
			if tc.want == 201 {
				created++
			}
		})
	}
	if len(ev.got) != created {
		t.Errorf("%d jobs created, want %d (the refused requests create none)", len(ev.got), created)
	}
}
