package query

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/httpapi"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// FollowLimit bounds the follow streams (`follow=true` on the log route) open at once on this
// replica, per user and in total: a stream holds a connection, a goroutine and a cluster log
// stream for as long as the step runs, so one viewer could otherwise fill the function. Past a
// limit the request is answered 429 with Retry-After. It wraps the route at registration; the
// log code does not know about it.
type FollowLimit struct {
	// PerUser and Total are the most streams of one user, and of everyone; ≤ 0 is unlimited.
	PerUser, Total int
	// RetryAfter is what a refused client is told to wait. Default 10s.
	RetryAfter time.Duration

	mu     sync.Mutex
	total  int
	byUser map[string]int
}

// acquire takes a stream for user, or returns a *jobs.LimitError.
func (l *FollowLimit) acquire(user string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	after := l.RetryAfter
	if after <= 0 {
		after = 10 * time.Second
	}
	if l.Total > 0 && l.total >= l.Total {
		return jobs.TooMany(after, "%d follow streams are open on this replica (the limit)", l.total)
	}
	if l.PerUser > 0 && l.byUser[user] >= l.PerUser {
		return jobs.TooMany(after, "you have %d follow streams open (the limit per user)", l.byUser[user])
	}
	if l.byUser == nil {
		l.byUser = map[string]int{}
	}
	l.total++
	l.byUser[user]++
	return nil
}

func (l *FollowLimit) release(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byUser[user]--; l.byUser[user] <= 0 {
		delete(l.byUser, user)
	}
}

// Open returns the number of streams open.
func (l *FollowLimit) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// Wrap returns next, limited for requests with follow=true (authenticated before: the user is
// the request's principal).
func (l *FollowLimit) Wrap(next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if follow, _ := strconv.ParseBool(r.URL.Query().Get("follow")); !follow {
			next.ServeHTTP(w, r)
			return
		}
		user := ""
		if p := auth.FromContext(r.Context()); p != nil {
			user = p.User
		}
		if err := l.acquire(user); err != nil {
			httpapi.Error(w, r, err)
			return
		}
		defer l.release(user)
		next.ServeHTTP(w, r)
	})
}
