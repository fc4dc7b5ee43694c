package auth

import (
	"context"
	"fmt"
)

// UsersEnv are the settings of the API users, embedded in the settings of the functions that
// serve /v1 routes.
type UsersEnv struct {
	// Htpasswd is the bcrypt htpasswd file. Default /etc/omni/auth/htpasswd.
	Htpasswd string `envconfig:"OMNI_HTPASSWD" default:"/etc/omni/auth/htpasswd"`
	// Users maps users to a role and services. Default /etc/omni/auth/users.yaml.
	Users string `envconfig:"OMNI_USERS" default:"/etc/omni/auth/users.yaml"`
}

// Load loads the authenticator and keeps it reloaded when the files change (mounted Secrets
// change in place) until ctx ends.
func (e UsersEnv) Load(ctx context.Context) (*Authenticator, error) {
	a, err := Load(e.Htpasswd, e.Users)
	if err != nil {
		return nil, fmt.Errorf("load credentials: %w", err)
	}
	go func() { _ = a.Watch(ctx) }()
	return a, nil
}
