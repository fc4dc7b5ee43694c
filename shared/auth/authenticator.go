package auth

import (
	"bufio"
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/crypto/bcrypt"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// Realm is the basic-auth realm of the API.
const Realm = "omni"

type options struct {
	cacheTTL  time.Duration
	cacheSize int
	// failed logins allowed per user and per client in each window
	failuresPerUser, failuresPerClient int
	failureWindow                      time.Duration
}

// MinCost is the lowest bcrypt cost an htpasswd entry may have (`htpasswd -B -C 10`): a lower
// one makes offline guessing cheap should the file leak.
const MinCost = 10

// Option configures an Authenticator.
type Option func(*options)

// WithCacheTTL sets how long a verified user:password pair skips bcrypt; default 1 minute,
// zero disables the cache.
func WithCacheTTL(d time.Duration) Option { return func(o *options) { o.cacheTTL = d } }

// WithCacheSize bounds the verified pairs remembered; default 1024.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }

// WithFailureLimits sets how many failed logins one user, and one client address, may have in
// each window before the Middleware answers 429 (Retry-After: the rest of the window) without
// checking passwords. Default 10 per user and 30 per client in 1 minute; a zero window
// disables the limits, a zero count disables that one.
func WithFailureLimits(perUser, perClient int, window time.Duration) Option {
	return func(o *options) { o.failuresPerUser, o.failuresPerClient, o.failureWindow = perUser, perClient, window }
}

// Authenticator checks basic-auth credentials against an htpasswd file and a users file.
type Authenticator struct {
	htpasswdPath, usersPath string
	opts                    options
	state                   atomic.Pointer[state]

	mu    sync.Mutex // guards cache and lru
	cache map[[32]byte]*list.Element
	lru   *list.List // of *cacheEntry, most recent first

	now      func() time.Time
	failures *failureLimit
	bcrypts  atomic.Uint64 // bcrypt comparisons made, for tests
	onReload func(error)   // test hook, called after each reload by Watch
}

type state struct {
	hashes map[string][]byte // user → bcrypt hash
	users  map[string]Principal
	// cost is the most common cost of hashes: unknown users are checked against a dummy hash
	// of that cost, so that they take as long as known ones.
	cost int
}

type cacheEntry struct {
	key     [32]byte
	hash    string // the hash verified against: a changed password invalidates the entry
	expires time.Time
}

// dummyHashes are compared against for unknown users, one per cost, each made on first use
// (a hash of cost 10 takes tens of milliseconds: not at start-up).
var dummyHashes sync.Map // cost → func() []byte

func dummyHash(cost int) []byte {
	f, _ := dummyHashes.LoadOrStore(cost, sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("omni-dummy-password"), cost)
		return h
	}))
	return f.(func() []byte)()
}

// Load reads the htpasswd file and the users file and returns an Authenticator for them.
func Load(htpasswdPath, usersPath string, opts ...Option) (*Authenticator, error) {
	o := options{cacheTTL: time.Minute, cacheSize: 1024, failuresPerUser: 10, failuresPerClient: 30, failureWindow: time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	a := &Authenticator{
		htpasswdPath: htpasswdPath,
		usersPath:    usersPath,
		opts:         o,
		cache:        map[[32]byte]*list.Element{},
		lru:          list.New(),
		now:          time.Now,
	}
	a.failures = newFailureLimit(o.failuresPerUser, o.failuresPerClient, o.failureWindow, func() time.Time { return a.now() })
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads both files. On error the previous contents stay in force; an htpasswd that
// lists no users while the previous one did, or with a cut-off hash, is an error. (At the first
// load an empty htpasswd is allowed: nobody can log in.)
func (a *Authenticator) Reload() error {
	hb, err := os.ReadFile(a.htpasswdPath)
	if err != nil {
		return fmt.Errorf("read htpasswd: %w", err)
	}
	ub, err := os.ReadFile(a.usersPath)
	if err != nil {
		return fmt.Errorf("read users: %w", err)
	}
	s, err := parse(hb, ub)
	if err != nil {
		return err
	}
	// A file that had users and has none is being written, or was cut off: keep the users.
	if prev := a.state.Load(); prev != nil && len(prev.hashes) > 0 && len(s.hashes) == 0 {
		return errors.New("htpasswd lists no users (empty or cut off?): keeping the previous users")
	}
	a.state.Store(s)
	return nil
}

// parse builds the state from the two files' contents.
func parse(htpasswd, users []byte) (*state, error) {
	s := &state{hashes: map[string][]byte{}, users: map[string]Principal{}, cost: MinCost}
	costs := map[int]int{}
	sc := bufio.NewScanner(bytes.NewReader(htpasswd))
	var errs []error
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || user == "":
			errs = append(errs, fmt.Errorf("htpasswd line %d: want user:hash", n))
			continue
		case !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$"):
			errs = append(errs, fmt.Errorf("htpasswd line %d (user %s): only bcrypt hashes are supported (htpasswd -B)", n, user))
			continue
		case s.hashes[user] != nil:
			errs = append(errs, fmt.Errorf("htpasswd line %d: user %s listed twice", n, user))
			continue
		}
		cost, err := bcrypt.Cost([]byte(hash))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("htpasswd line %d (user %s): %w", n, user, err))
			continue
		case len(hash) != 60: // every bcrypt hash has 60 characters: a shorter one is cut off
			errs = append(errs, fmt.Errorf("htpasswd line %d (user %s): truncated bcrypt hash (%d of 60 characters)", n, user, len(hash)))
			continue
		case cost < MinCost:
			errs = append(errs, fmt.Errorf("htpasswd line %d (user %s): bcrypt cost %d is below %d (htpasswd -B -C %d)", n, user, cost, MinCost, MinCost))
			continue
		}
		s.hashes[user] = []byte(hash)
		costs[cost]++
		if costs[cost] > costs[s.cost] || (costs[cost] == costs[s.cost] && cost > s.cost) {
			s.cost = cost
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read htpasswd: %w", err)
	}

	var doc struct {
		Users map[string]struct {
			Role     string   `json:"role"`
			Services []string `json:"services"`
		} `json:"users"`
	}
	if err := yaml.UnmarshalStrict(users, &doc); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	for name, u := range doc.Users {
		role, err := ParseRole(u.Role)
		if err != nil {
			errs = append(errs, fmt.Errorf("users file: user %s: %w", name, err))
			continue
		}
		if len(u.Services) == 0 {
			errs = append(errs, fmt.Errorf("users file: user %s: services: name at least one, or %q for all", name, AllServices))
			continue
		}
		s.users[name] = Principal{User: name, Role: role, Services: u.Services}
	}
	for user := range s.hashes {
		if _, ok := s.users[user]; !ok {
			errs = append(errs, fmt.Errorf("htpasswd user %s has no entry in the users file", user))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Authenticate returns the Principal for user and password, or ErrUnauthorized.
func (a *Authenticator) Authenticate(user, password string) (*Principal, error) {
	s := a.state.Load()
	hash, known := s.hashes[user]
	if !known {
		a.bcrypts.Add(1)
		_ = bcrypt.CompareHashAndPassword(dummyHash(s.cost), []byte(password))
		return nil, ErrUnauthorized
	}
	key := sha256.Sum256([]byte(user + ":" + password))
	if !a.cached(key, hash) {
		a.bcrypts.Add(1)
		if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
			return nil, ErrUnauthorized
		}
		a.remember(key, hash)
	}
	p := s.users[user]
	p.Services = slices.Clone(p.Services)
	return &p, nil
}

func (a *Authenticator) cached(key [32]byte, hash []byte) bool {
	if a.opts.cacheTTL <= 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.cache[key]
	if !ok {
		return false
	}
	e := el.Value.(*cacheEntry)
	if e.hash != string(hash) || !a.now().Before(e.expires) {
		a.lru.Remove(el)
		delete(a.cache, key)
		return false
	}
	a.lru.MoveToFront(el)
	return true
}

func (a *Authenticator) remember(key [32]byte, hash []byte) {
	if a.opts.cacheTTL <= 0 || a.opts.cacheSize <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := &cacheEntry{key: key, hash: string(hash), expires: a.now().Add(a.opts.cacheTTL)}
	if el, ok := a.cache[key]; ok {
		el.Value = e
		a.lru.MoveToFront(el)
		return
	}
	a.cache[key] = a.lru.PushFront(e)
	for a.lru.Len() > a.opts.cacheSize {
		oldest := a.lru.Back()
		a.lru.Remove(oldest)
		delete(a.cache, oldest.Value.(*cacheEntry).key)
	}
}

// Middleware lets requests with valid basic-auth credentials through to next, with their
// Principal in the context (FromContext), and answers all others 401 with a
// WWW-Authenticate challenge and an application/problem+json body — or 429 with Retry-After
// when the user or the client had too many failed logins lately (WithFailureLimits).
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, r, "missing basic-auth credentials")
			return
		}
		client := clientIP(r)
		if wait := a.failures.blocked(user, client); wait > 0 {
			httpapi.Error(w, r, jobs.TooMany(wait, "too many failed logins; try again later"))
			return
		}
		p, err := a.Authenticate(user, password)
		if err != nil {
			a.failures.fail(user, client)
			unauthorized(w, r, "invalid credentials")
			return
		}
		a.failures.succeed(user)
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), p)))
	})
}

func unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	httpapi.Error(w, r, unauthenticated(detail))
}

// unauthenticated is a 401 whose detail is the text alone.
type unauthenticated string

func (e unauthenticated) Error() string { return string(e) }
func (e unauthenticated) Unwrap() error { return jobs.ErrUnauthenticated }

// Watch reloads the files when they change, until ctx is done. It watches their folders, so
// that it also sees a Kubernetes Secret volume swapping its ..data link. A failed reload is
// logged and the previous contents stay in force.
func (a *Authenticator) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch auth files: %w", err)
	}
	defer w.Close()
	dirs := map[string]bool{filepath.Dir(a.htpasswdPath): true, filepath.Dir(a.usersPath): true}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	names := map[string]bool{
		filepath.Base(a.htpasswdPath): true,
		filepath.Base(a.usersPath):    true,
		"..data":                      true,
	}
	log := logging.FromContext(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warnw("watching auth files", "error", err)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !names[filepath.Base(ev.Name)] || ev.Op == fsnotify.Chmod {
				continue
			}
			err := a.Reload()
			if err != nil {
				log.Errorw("reload auth files; keeping the previous ones", "error", err)
			} else {
				log.Infow("reloaded auth files", "htpasswd", a.htpasswdPath, "users", a.usersPath)
			}
			if a.onReload != nil {
				a.onReload(err)
			}
		}
	}
}

// HashPassword returns the htpasswd line "user:<bcrypt hash>" for user and password, as
// `htpasswd -nbB user password` prints it; the local mode uses it to create its credential.
func HashPassword(user, password string) (string, error) {
	if user == "" || strings.ContainsAny(user, ":\r\n") {
		return "", fmt.Errorf("hash password: user %q must be non-empty, without ':' or line breaks", user)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), MinCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return user + ":" + string(h), nil
}
