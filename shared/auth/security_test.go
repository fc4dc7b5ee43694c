package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// An unknown user costs as much time as a known user with a wrong password: the medians of
// interleaved tries differ by less than 35% (before the fix: 55 ms against 1.9 ms, a factor of
// 29). Interleaving and medians keep a loaded machine from skewing one side.
func TestUnknownUserTiming(t *testing.T) {
	a, _ := setup(t, WithCacheTTL(0))
	_, _ = a.Authenticate("nobody", "x") // makes the dummy hash, once
	const tries = 9
	var known, unknown []time.Duration
	for i := range tries {
		for _, c := range []struct {
			user string
			into *[]time.Duration
		}{{"alice", &known}, {fmt.Sprintf("nobody-%d", i), &unknown}} {
			began := time.Now()
			if _, err := a.Authenticate(c.user, "wrong-password"); err == nil {
				t.Fatalf("%s logged in with a wrong password", c.user)
			}
			*c.into = append(*c.into, time.Since(began))
		}
	}
	median := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	k, u := median(known), median(unknown)
	t.Logf("median over %d tries: known user, wrong password %v; unknown user %v", tries, k, u)
	if ratio := float64(u) / float64(k); ratio < 0.65 || ratio > 1.35 {
		t.Errorf("unknown user %v against known user %v (ratio %.2f): want within 35%%", u, k, ratio)
	}
}

// Failed logins are limited per user and per client: 429 with Retry-After, without checking
// the password; the window's end lifts it.
func TestFailedLoginLimits(t *testing.T) {
	a, _ := setup(t, WithFailureLimits(3, 5, time.Minute))
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)
	try := func(user, password, client string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.SetBasicAuth(user, password)
		if client != "" {
			req.Header.Set("X-Forwarded-For", "198.51.100.7, "+client+", 10.0.0.3")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range 3 {
		if r := try("bob", "guess", fmt.Sprintf("203.0.113.%d", i)); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i, r.StatusCode)
		}
	}
	before := a.bcrypts.Load()
	r := try("bob", "bob-pw", "203.0.113.50")
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" {
		t.Errorf("bob after 3 failures: %d, Retry-After %q; want 429 with 60", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if a.bcrypts.Load() != before {
		t.Error("a refused login still checked the password")
	}
	if r := try("carol", "carol-pw", "203.0.113.50"); r.StatusCode != http.StatusOK {
		t.Errorf("another user: %d, want 200", r.StatusCode)
	}

	// Per client: 5 failures of made-up users from one address.
	for i := range 5 {
		try(fmt.Sprintf("nobody-%d", i), "x", "192.0.2.9")
	}
	if r := try("carol", "carol-pw", "192.0.2.9"); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("client after 5 failures: %d, want 429", r.StatusCode)
	}
	if r := try("carol", "carol-pw", "192.0.2.10"); r.StatusCode != http.StatusOK {
		t.Errorf("another client: %d, want 200", r.StatusCode)
	}

	now = now.Add(time.Minute)
	if r := try("bob", "bob-pw", "192.0.2.9"); r.StatusCode != http.StatusOK {
		t.Errorf("after the window: %d, want 200", r.StatusCode)
	}
}

// Weak and cut-off htpasswd files are refused, and so is an empty one on reload: a reload that
// would take one keeps the previous users.
func TestHtpasswdStrength(t *testing.T) {
	weak, err := bcrypt.GenerateFromPassword([]byte("pw"), MinCost-1)
	if err != nil {
		t.Fatal(err)
	}
	good := hash(t, "pw")
	for name, c := range map[string]struct{ htpasswd, want string }{
		"cost below 10": {"alice:" + string(weak) + "\n", "bcrypt cost 9 is below 10 (htpasswd -B -C 10)"},
		"empty":         {"", "htpasswd lists no users"},
		"comments only": {"# nothing\n", "htpasswd lists no users"},
		"cut off":       {"alice:" + good[:59], "truncated bcrypt hash"},
	} {
		t.Run(name, func(t *testing.T) {
			a, dir := setup(t)
			write(t, filepath.Join(dir, "htpasswd"), c.htpasswd)
			write(t, filepath.Join(dir, "users.yaml"), "users:\n  alice: {role: admin, services: ['*']}\n")
			if err := a.Reload(); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Reload = %v, want an error with %q", err, c.want)
			}
			if _, err := a.Authenticate("bob", "bob-pw"); err != nil {
				t.Errorf("after the refused reload bob cannot log in: %v", err)
			}
			// At start an empty file is no users (nobody logs in); a weak or cut-off hash is refused.
			_, err := Load(filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml"))
			if empty := strings.Contains(c.want, "no users"); (err == nil) != empty {
				t.Errorf("Load = %v, want an error: %v", err, !empty)
			}
		})
	}
}
