package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"
)

// hashes are the tests' bcrypt hashes by password, made once each (cost MinCost is slow).
var hashes sync.Map

// hash is a bcrypt hash of the least cost allowed, in the $2y$ form `htpasswd -B -C 10` writes.
func hash(t *testing.T, password string) string {
	t.Helper()
	if h, ok := hashes.Load(password); ok {
		return h.(string)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), MinCost)
	if err != nil {
		t.Fatal(err)
	}
	y := "$2y$" + strings.TrimPrefix(string(h), "$2a$")
	hashes.Store(password, y)
	return y
}

const usersYAML = `
# role: viewer | submitter | admin
users:
  alice: {role: admin, services: ["*"]}
  bob: {role: submitter, services: [iso, rpm]}
  carol: {role: viewer, services: [iso]}
  dave: {role: viewer, services: ["*"]} # no password: cannot log in
`

// setup writes the two files into a temporary folder and loads them.
func setup(t *testing.T, opts ...Option) (*Authenticator, string) {
	t.Helper()
	dir := t.TempDir()
	htpasswd := strings.Join([]string{
		"alice:" + hash(t, "alice-pw"),
		"bob:" + hash(t, "bob-pw"),
		"carol:" + hash(t, "carol-pw"),
	}, "\n") + "\n"
	write(t, filepath.Join(dir, "htpasswd"), htpasswd)
	write(t, filepath.Join(dir, "users.yaml"), usersYAML)
	a, err := Load(filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml"), opts...)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return a, dir
}

// write replaces path atomically, as a Secret volume update does.
func write(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestMiddleware(t *testing.T) {
	a, _ := setup(t)
	srv := httptest.NewServer(a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := FromContext(r.Context())
		if p == nil {
			http.Error(w, "no principal", http.StatusInternalServerError)
			return
		}
		_ = json.NewEncoder(w).Encode(p)
	})))
	defer srv.Close()

	tests := map[string]struct {
		user, password string
		noAuth         bool
		want           int
		wantPrincipal  *Principal
		wantDetail     string
	}{
		"valid":             {user: "bob", password: "bob-pw", want: 200, wantPrincipal: &Principal{User: "bob", Role: RoleSubmitter, Services: []string{"iso", "rpm"}}},
		"missing":           {noAuth: true, want: 401, wantDetail: "missing basic-auth credentials"},
		"wrong password":    {user: "bob", password: "alice-pw", want: 401, wantDetail: "invalid credentials"},
		"unknown user":      {user: "mallory", password: "x", want: 401, wantDetail: "invalid credentials"},
		"user without hash": {user: "dave", password: "", want: 401, wantDetail: "invalid credentials"},
		"empty password":    {user: "alice", password: "", want: 401, wantDetail: "invalid credentials"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/jobs", nil)
			if !tc.noAuth {
				req.SetBasicAuth(tc.user, tc.password)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="omni"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
					t.Errorf("Content-Type = %q", got)
				}
				var problem struct {
					Title, Detail string
					Status        int
				}
				if err := json.NewDecoder(resp.Body).Decode(&problem); err != nil {
					t.Fatal(err)
				}
				if problem.Status != 401 || problem.Detail != tc.wantDetail {
					t.Errorf("problem = %+v, want status 401 detail %q", problem, tc.wantDetail)
				}
				return
			}
			var got Principal
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*tc.wantPrincipal, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCan(t *testing.T) {
	admin := &Principal{User: "a", Role: RoleAdmin, Services: []string{"*"}}
	submitter := &Principal{User: "s", Role: RoleSubmitter, Services: []string{"iso", "rpm"}}
	viewer := &Principal{User: "v", Role: RoleViewer, Services: []string{"iso"}}
	tests := map[string]struct {
		p       *Principal
		role    Role
		service string
		want    bool
	}{
		"admin of all may delete anywhere":       {admin, RoleAdmin, "any", true},
		"admin may view":                         {admin, RoleViewer, "iso", true},
		"submitter may submit to its service":    {submitter, RoleSubmitter, "rpm", true},
		"submitter may view its service":         {submitter, RoleViewer, "iso", true},
		"submitter may not submit elsewhere":     {submitter, RoleSubmitter, "srpm", false},
		"submitter may not administer":           {submitter, RoleAdmin, "iso", false},
		"viewer may view its service":            {viewer, RoleViewer, "iso", true},
		"viewer may not submit":                  {viewer, RoleSubmitter, "iso", false},
		"viewer may not view another service":    {viewer, RoleViewer, "rpm", false},
		"nobody may do RoleNone (not a grant)":   {admin, RoleNone, "iso", false},
		"nil principal may do nothing":           {nil, RoleViewer, "iso", false},
		"a principal with RoleNone may not view": {&Principal{Services: []string{"*"}}, RoleViewer, "iso", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.p.Can(tc.role, tc.service); got != tc.want {
				t.Errorf("Can(%s, %s) = %v, want %v", tc.role, tc.service, got, tc.want)
			}
		})
	}
}

func TestOnlyService(t *testing.T) {
	tests := map[string]struct {
		p      *Principal
		want   string
		wantOK bool
	}{
		"one service":  {&Principal{Services: []string{"iso"}}, "iso", true},
		"two services": {&Principal{Services: []string{"iso", "rpm"}}, "", false},
		"all":          {&Principal{Services: []string{"*"}}, "", false},
		"nil":          {nil, "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := tc.p.OnlyService()
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("OnlyService = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range []Role{RoleViewer, RoleSubmitter, RoleAdmin} {
		got, err := ParseRole(r.String())
		if err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r.String(), got, err)
		}
	}
	if _, err := ParseRole("none"); err == nil {
		t.Error(`ParseRole("none") succeeded`)
	}
}

func TestCache(t *testing.T) {
	a, dir := setup(t, WithCacheTTL(time.Minute))
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	auth := func(user, password string) error {
		_, err := a.Authenticate(user, password)
		return err
	}

	steps := []struct {
		name           string
		do             func()
		user, password string
		wantErr        error
		wantBcrypts    uint64 // total so far
	}{
		{name: "first login runs bcrypt", user: "alice", password: "alice-pw", wantBcrypts: 1},
		{name: "second login hits the cache", user: "alice", password: "alice-pw", wantBcrypts: 1},
		{name: "wrong password is never cached", user: "alice", password: "nope", wantErr: ErrUnauthorized, wantBcrypts: 2},
		{name: "wrong password again costs again", user: "alice", password: "nope", wantErr: ErrUnauthorized, wantBcrypts: 3},
		{name: "unknown users cost a bcrypt too", user: "mallory", password: "x", wantErr: ErrUnauthorized, wantBcrypts: 4},
		{name: "still cached before the TTL", do: func() { now = now.Add(59 * time.Second) }, user: "alice", password: "alice-pw", wantBcrypts: 4},
		{name: "expired after the TTL", do: func() { now = now.Add(2 * time.Second) }, user: "alice", password: "alice-pw", wantBcrypts: 5},
		{name: "a changed password invalidates the cached one", do: func() {
			write(t, filepath.Join(dir, "htpasswd"), "alice:"+hash(t, "new-pw")+"\nbob:"+hash(t, "bob-pw")+"\n")
			if err := a.Reload(); err != nil {
				t.Fatal(err)
			}
		}, user: "alice", password: "alice-pw", wantErr: ErrUnauthorized, wantBcrypts: 6},
		{name: "the new password works", user: "alice", password: "new-pw", wantBcrypts: 7},
		{name: "a removed user is refused at once", user: "carol", password: "carol-pw", wantErr: ErrUnauthorized, wantBcrypts: 8},
	}
	for _, s := range steps {
		if s.do != nil {
			s.do()
		}
		if err := auth(s.user, s.password); !errors.Is(err, s.wantErr) {
			t.Errorf("%s: Authenticate = %v, want %v", s.name, err, s.wantErr)
		}
		if got := a.bcrypts.Load(); got != s.wantBcrypts {
			t.Errorf("%s: bcrypt comparisons = %d, want %d", s.name, got, s.wantBcrypts)
		}
	}
}

func TestCacheEviction(t *testing.T) {
	a, _ := setup(t, WithCacheSize(2))
	for _, u := range []string{"alice", "bob", "carol", "alice"} {
		if _, err := a.Authenticate(u, u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	// alice was the least recently used when carol came in: evicted, so verified again.
	if got := a.bcrypts.Load(); got != 4 {
		t.Errorf("bcrypt comparisons = %d, want 4", got)
	}
	if a.lru.Len() != 2 || len(a.cache) != 2 {
		t.Errorf("cache holds %d/%d entries, want 2", a.lru.Len(), len(a.cache))
	}
}

func TestCacheDisabled(t *testing.T) {
	a, _ := setup(t, WithCacheTTL(0))
	for range 2 {
		if _, err := a.Authenticate("bob", "bob-pw"); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.bcrypts.Load(); got != 2 {
		t.Errorf("bcrypt comparisons = %d, want 2", got)
	}
}

func TestLoadErrors(t *testing.T) {
	good := func(t *testing.T) string { return "alice:" + hash(t, "pw") + "\n" }
	tests := map[string]struct {
		htpasswd func(t *testing.T) string
		users    string
		wantErr  string
	}{
		"comments and blank lines are fine": {
			htpasswd: func(t *testing.T) string { return "# made with htpasswd -B\n\n" + good(t) },
			users:    "users:\n  alice: {role: admin, services: ['*']}\n",
		},
		"CRLF line ends are fine": {
			htpasswd: func(t *testing.T) string { return strings.ReplaceAll(good(t), "\n", "\r\n") },
			users:    "users:\n  alice: {role: admin, services: ['*']}\n",
		},
		"not bcrypt": {
			htpasswd: func(*testing.T) string { return "alice:$apr1$abc$def\n" },
			users:    "users:\n  alice: {role: admin, services: ['*']}\n",
			wantErr:  "htpasswd line 1 (user alice): only bcrypt hashes are supported (htpasswd -B)",
		},
		"malformed line": {
			htpasswd: func(*testing.T) string { return "alice\n" },
			users:    "users: {}\n",
			wantErr:  "htpasswd line 1: want user:hash",
		},
		"broken bcrypt hash": {
			htpasswd: func(*testing.T) string { return "alice:$2y$xx\n" },
			users:    "users:\n  alice: {role: admin, services: ['*']}\n",
			wantErr:  "htpasswd line 1 (user alice)",
		},
		"duplicate user": {
			htpasswd: func(t *testing.T) string { return good(t) + good(t) },
			users:    "users:\n  alice: {role: admin, services: ['*']}\n",
			wantErr:  "htpasswd line 2: user alice listed twice",
		},
		"user without entry": {
			htpasswd: good,
			users:    "users: {}\n",
			wantErr:  "htpasswd user alice has no entry in the users file",
		},
		"unknown role": {
			htpasswd: good,
			users:    "users:\n  alice: {role: root, services: ['*']}\n",
			wantErr:  `users file: user alice: unknown role "root"`,
		},
		"no services": {
			htpasswd: good,
			users:    "users:\n  alice: {role: admin}\n",
			wantErr:  "users file: user alice: services: name at least one",
		},
		"unknown field": {
			htpasswd: good,
			users:    "users:\n  alice: {role: admin, services: ['*'], servics: [x]}\n",
			wantErr:  `unknown field "servics"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "htpasswd"), tc.htpasswd(t))
			write(t, filepath.Join(dir, "users.yaml"), tc.users)
			_, err := Load(filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml"))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Load error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing"), "x"); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestHashPassword(t *testing.T) {
	line, err := HashPassword("admin", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "htpasswd"), line+"\n")
	write(t, filepath.Join(dir, "users.yaml"), "users:\n  admin: {role: admin, services: ['*']}\n")
	a, err := Load(filepath.Join(dir, "htpasswd"), filepath.Join(dir, "users.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Authenticate("admin", "s3cret")
	if err != nil || !p.Can(RoleAdmin, "anything") {
		t.Errorf("Authenticate with the hashed credential = %v, %v", p, err)
	}
	if _, err := HashPassword("a:b", "x"); err == nil {
		t.Error("HashPassword accepted a user with ':'")
	}
}

func TestWatch(t *testing.T) {
	a, dir := setup(t)
	reloaded := make(chan error, 10)
	a.onReload = func(err error) { reloaded <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch = %v", err)
		}
	}()

	// Watch has started once it sees a change, so keep changing the file until a reload shows
	// the wanted result. Files of a Secret volume change by rename, like write does.
	waitReload := func(change func(), want func(err error) bool) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		change()
		for {
			select {
			case err := <-reloaded:
				if want(err) {
					return
				}
			case <-tick.C:
				change()
			case <-deadline:
				t.Fatal("no wanted reload within 30s")
			}
		}
	}
	carolIs := func(role Role) func(error) bool {
		return func(error) bool {
			p, err := a.Authenticate("carol", "carol-pw")
			return err == nil && p.Role == role
		}
	}
	newUsers := strings.Replace(usersYAML, "carol: {role: viewer, services: [iso]}", "carol: {role: admin, services: [iso]}", 1)
	waitReload(func() { write(t, filepath.Join(dir, "users.yaml"), newUsers) }, carolIs(RoleAdmin))

	// A broken file is refused and the previous contents stay.
	waitReload(func() { write(t, filepath.Join(dir, "users.yaml"), "users: [") }, func(err error) bool { return err != nil })
	if !carolIs(RoleAdmin)(nil) {
		t.Error("after a failed reload carol is no longer admin")
	}
}
