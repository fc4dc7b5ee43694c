package auth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fuzzHash is a bcrypt hash of "pw" at MinCost, made once for the seeds of the fuzz targets.
func fuzzHash(f *testing.F) string {
	f.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), MinCost)
	if err != nil {
		f.Fatal(err)
	}
	return string(h)
}

// FuzzUsersFiles feeds the htpasswd and users files (an operator's Secret) to the parser: it
// either refuses them with an error or gives users that can all log in with a role and services.
func FuzzUsersFiles(f *testing.F) {
	h := fuzzHash(f)
	users := "users:\n  alice: {role: admin, services: ['*']}\n"
	f.Add([]byte("alice:"+h+"\n"), []byte(users))
	f.Add([]byte("# made with htpasswd -B\n\nalice:"+h+"\r\n"), []byte(users))
	f.Add([]byte("alice:$apr1$abc$def\n"), []byte(users))
	f.Add([]byte("alice\n"), []byte("users: {}\n"))
	f.Add([]byte("alice:$2y$xx\n"), []byte(users))
	f.Add([]byte("alice:"+h+"\nalice:"+h+"\n"), []byte(users))
	f.Add([]byte("alice:"+h[:40]+"\n"), []byte(users))
	f.Add([]byte("alice:"+h+"\n"), []byte("users:\n  alice: {role: root, services: ['*']}\n"))
	f.Add([]byte("alice:"+h+"\n"), []byte("users:\n  alice: {role: admin}\n"))
	f.Add([]byte("alice:"+h+"\n"), []byte("users:\n  alice: {role: admin, services: ['*'], servics: [x]}\n"))
	f.Add([]byte(""), []byte(usersYAML))
	f.Add([]byte(""), []byte("users: [\n"))
	f.Fuzz(func(t *testing.T, htpasswd, users []byte) {
		s, err := parse(htpasswd, users)
		if err != nil {
			if s != nil || err.Error() == "" {
				t.Fatalf("error %q with a state %v", err, s)
			}
			return
		}
		for user, hash := range s.hashes {
			p, ok := s.users[user]
			if !ok || len(p.Services) == 0 || p.User != user {
				t.Errorf("user %q: principal %+v", user, p)
			}
			if r, err := ParseRole(p.Role.String()); err != nil || r != p.Role {
				t.Errorf("user %q: role %v does not read back: %v", user, p.Role, err)
			}
			if cost, err := bcrypt.Cost(hash); err != nil || cost < MinCost || len(hash) != 60 {
				t.Errorf("user %q: hash %q taken (cost %d, %v)", user, hash, cost, err)
			}
		}
	})
}

// FuzzBasicAuth sends arbitrary Authorization headers to the middleware: the one valid
// credential passes, as its user, whatever the spelling of the header; every other answer is a
// 401 problem document, never a crash.
func FuzzBasicAuth(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte("alice:"+fuzzHash(f)+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.yaml"), []byte("users:\n  alice: {role: admin, services: ['*']}\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	// No lockout: the limiter is tested on its own, and here the same client fails without end.
	a, err := Load(filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml"), WithFailureLimits(1<<30, 1<<30, time.Minute))
	if err != nil {
		f.Fatal(err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := FromContext(r.Context()); p != nil {
			w.Header().Set("X-Principal", p.User)
		}
	}))
	for _, v := range []string{"Basic YWxpY2U6cHc=", "Basic YWxpY2U6eA==", "Basic", "Basic !!!", "Bearer x", "basic YWxpY2U6cHc=", "Basic Ym9iOg==", ""} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, authorization string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/jobs", nil)
		req.Header.Set("Authorization", authorization)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		user, password, ok := req.BasicAuth()
		valid := ok && user == "alice" && password == "pw"
		switch code := w.Code; {
		case valid && code == http.StatusOK:
			if p := w.Header().Get("X-Principal"); p != "alice" {
				t.Errorf("passed as %q, want alice", p)
			}
		case !valid && code == http.StatusUnauthorized:
			if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%d with Content-Type %q", code, ct)
			}
		default:
			t.Errorf("Authorization %q: %d %s", authorization, code, strings.TrimSpace(w.Body.String()))
		}
	})
}
