package auth

import (
	"context"
	"fmt"
	"time"
)

// UsersEnv are the settings of the API users, embedded in the settings of the functions that
// serve /v1 routes.
type UsersEnv struct {
	// Htpasswd is the bcrypt htpasswd file. Default /etc/omni/auth/htpasswd.
	Htpasswd string `envconfig:"OMNI_HTPASSWD" default:"/etc/omni/auth/htpasswd"`
	// Users maps users to a role and services. Default /etc/omni/auth/users.yaml.
	Users string `envconfig:"OMNI_USERS" default:"/etc/omni/auth/users.yaml"`
	// FailuresPerUser is how many failed logins one user may have per FailureWindow before
	// further attempts are answered 429 (on this replica). Default 10; 0 is unlimited.
	FailuresPerUser int `envconfig:"OMNI_LOGIN_FAILURES_PER_USER" default:"10"`
	// FailuresPerClient is the same per client address. Default 30; 0 is unlimited.
	FailuresPerClient int `envconfig:"OMNI_LOGIN_FAILURES_PER_CLIENT" default:"30"`
	// FailureWindow is the window of those counts. Default 1m; 0 disables both limits.
	FailureWindow time.Duration `envconfig:"OMNI_LOGIN_FAILURE_WINDOW" default:"1m"`
}

// Load loads the authenticator and keeps it reloaded when the files change (mounted Secrets
// change in place) until ctx ends.
func (e UsersEnv) Load(ctx context.Context) (*Authenticator, error) {
	a, err := Load(e.Htpasswd, e.Users, WithFailureLimits(e.FailuresPerUser, e.FailuresPerClient, e.FailureWindow))
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	go func() { _ = a.Watch(ctx) }()
	return a, nil
}
