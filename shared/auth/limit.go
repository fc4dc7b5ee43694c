package auth

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// failureLimit counts failed logins per user and per client in fixed windows: past either
// limit, further attempts are refused (429 with Retry-After) without checking the password,
// until the window ends. Each replica counts its own.
type failureLimit struct {
	perUser, perClient int
	window             time.Duration
	now                func() time.Time

	mu             sync.Mutex
	users, clients map[string]*failures
	maxKeys        int
}

type failures struct {
	n     int
	start time.Time
}

func newFailureLimit(perUser, perClient int, window time.Duration, now func() time.Time) *failureLimit {
	return &failureLimit{perUser: perUser, perClient: perClient, window: window, now: now,
		users: map[string]*failures{}, clients: map[string]*failures{}, maxKeys: 100_000}
}

// blocked returns how long user or client must wait (0: they may try).
func (l *failureLimit) blocked(user, client string) time.Duration {
	if l == nil || l.window <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	wait := time.Duration(0)
	for _, c := range []struct {
		m     map[string]*failures
		key   string
		limit int
	}{{l.users, user, l.perUser}, {l.clients, client, l.perClient}} {
		f := c.m[c.key]
		if c.limit <= 0 || f == nil || now.Sub(f.start) >= l.window || f.n < c.limit {
			continue
		}
		wait = max(wait, f.start.Add(l.window).Sub(now))
	}
	return wait
}

// fail counts a failed login of user from client.
func (l *failureLimit) fail(user, client string) {
	if l == nil || l.window <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, c := range []struct {
		m   map[string]*failures
		key string
	}{{l.users, user}, {l.clients, client}} {
		f := c.m[c.key]
		if f == nil || now.Sub(f.start) >= l.window {
			if f == nil && len(c.m) >= l.maxKeys {
				l.sweep(c.m, now)
			}
			f = &failures{start: now}
			c.m[c.key] = f
		}
		f.n++
	}
}

// succeed forgets user's failures (not the client's).
func (l *failureLimit) succeed(user string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.users, user)
}

// sweep drops the ended windows of m; if m is still full, it drops everything (the other
// limit still holds a flood of made-up user names).
func (l *failureLimit) sweep(m map[string]*failures, now time.Time) {
	for k, f := range m {
		if now.Sub(f.start) >= l.window {
			delete(m, k)
		}
	}
	if len(m) >= l.maxKeys {
		clear(m)
	}
}

// clientIP is who sent r: the rightmost public address of X-Forwarded-For (the one the
// cluster's ingress appended: entries to its left are the client's own claims, entries to its
// right are the cluster's proxies), else the peer address.
func clientIP(r *http.Request) string {
	fwd := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(fwd) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(fwd[i]))
		if err != nil {
			continue
		}
		if a = a.Unmap(); !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			return a.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
