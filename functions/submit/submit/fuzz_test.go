package submit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// FuzzSubmit posts arbitrary bodies and Idempotency-Keys to POST /v1/jobs, through the real
// job types (their parameter schemas and templates) and a real store: every answer is a
// created job that is what was asked and is stored, or a client error (4xx) with a problem
// document that says what is wrong — never a crash and never a 5xx (nothing else fails here).
func FuzzSubmit(f *testing.F) {
	h, _, _ := newHandler(f)
	h.MaxBody = 64 << 10
	mux := http.NewServeMux()
	h.Routes(mux, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), submitter)))
		})
	})
	for _, seed := range []string{
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"}}`,
		`{"service":"release","task":"buildsrpm","arch":"x86_64","parameters":{"spec":"Name: x\n"}}`,
		`{"service":"release","task":"buildimagefromrelease","arch":"x86_64","domain":"d","parameters":{"version":"24.03-LTS","packages":["bash","@core"],"repos":["https://repo.example.org/os/$basearch/"]},"labels":{"team":"a"}}`,
		`{"service":"release","task":"buildimagefromiso","arch":"aarch64","parameters":{"isoUrl":"https://example.org/a.iso","isoSha256":"` + strings.Repeat("a", 64) + `","kickstart":"text\n"}}`,
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":7}}`,
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"},"callback":"http://10.1.2.3/"}`,
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"},"callback":"https://hooks.example.org/x"}`,
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"},"labels":{"app.kubernetes.io/managed-by":"me"}}`,
		`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"},"class":"urgent"}`,
		`{"service":"Bad_Name","task":"buildrpm","arch":"aarch64"}`,
		`{"service":"other","task":"buildrpm","arch":"aarch64"}`,
		`{"service":"release","task":"nope","arch":"sparc"}`,
		`{"service":"release","task":"buildrpm"}`,
		`{"service":"release","servic":"x"}`,
		`{"service":"release"} {}`,
		`[1,2]`,
		``,
		`{"service":`,
	} {
		f.Add([]byte(seed), "")
	}
	f.Add([]byte(`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/a.src.rpm"}}`), "key-1")
	f.Add([]byte(`{"service":"release","task":"buildrpm","arch":"aarch64","parameters":{"srpmUrl":"https://example.org/b.src.rpm"}}`), "key-1")
	f.Add([]byte(`{}`), strings.Repeat("k", 256))
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/jobs", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			if strings.ContainsAny(key, "\r\n\x00") {
				t.Skip("not a header value")
			}
			req.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		switch code := w.Code; {
		case code == http.StatusCreated || code == http.StatusOK:
			var asked Request
			if err := json.Unmarshal(body, &asked); err != nil {
				t.Fatalf("%d for a body that does not decode (%v): %q", code, err, body)
			}
			var got jobs.Job
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatalf("%d with %q: %v", code, w.Body.Bytes(), err)
			}
			if code == http.StatusCreated && (got.Service != asked.Service || got.Task != asked.Task || got.Arch != asked.Arch || got.Domain != asked.Domain) {
				t.Errorf("asked %s/%s/%s/%s, created %s/%s/%s/%s", asked.Service, asked.Task, asked.Arch, asked.Domain, got.Service, got.Task, got.Arch, got.Domain)
			}
			if _, err := h.Store.GetJob(t.Context(), got.ID); err != nil {
				t.Errorf("created job %s is not stored: %v", got.ID, err)
			}
		case code >= 400 && code < 500:
			var p httpapi.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != code || p.Detail == "" ||
				w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("%d: not a problem document that says why: %q (%v)", code, w.Body.Bytes(), err)
			}
		default:
			t.Errorf("POST %q: %d %s", body, code, w.Body.Bytes())
		}
	})
}
