// Package auth is HTTP basic authentication for the /v1 API (DESIGN §6): passwords come from a
// standard bcrypt htpasswd file (`htpasswd -B`), and a users file scopes each user to services
// with a role, viewer < submitter < admin.
//
// The users file (YAML):
//
//	users:
//	  alice: {role: admin, services: ["*"]}          # "*": every service
//	  ci-iso: {role: submitter, services: [openeuler-iso, openeuler-rpm]}
//	  dashboard: {role: viewer, services: ["*"]}
//
// Every htpasswd user needs an entry; entries without a password cannot log in. Both files are
// typically keys of one Secret, so that they change together.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a user may do within its services; a higher role includes the lower ones.
type Role int

// The roles, in increasing order.
const (
	// RoleNone is the zero Role: nothing is allowed.
	RoleNone Role = iota
	// RoleViewer reads jobs, logs and the task catalogue.
	RoleViewer
	// RoleSubmitter also creates and cancels jobs.
	RoleSubmitter
	// RoleAdmin also deletes finished jobs.
	RoleAdmin
)

var roleNames = map[Role]string{RoleNone: "none", RoleViewer: "viewer", RoleSubmitter: "submitter", RoleAdmin: "admin"}

func (r Role) String() string {
	if s, ok := roleNames[r]; ok {
		return s
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// ParseRole parses "viewer", "submitter" or "admin".
func ParseRole(s string) (Role, error) {
	for r, name := range roleNames {
		if r != RoleNone && name == s {
			return r, nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (want viewer, submitter or admin)", s)
}

// AllServices in Principal.Services grants access to every service.
const AllServices = "*"

// Principal is an authenticated user.
type Principal struct {
	User     string
	Role     Role
	Services []string // the services the user may act on; AllServices for all
}

// Can reports whether p has at least role within service. A nil Principal can do nothing.
func (p *Principal) Can(role Role, service string) bool {
	if p == nil || role == RoleNone || p.Role < role {
		return false
	}
	return slices.Contains(p.Services, AllServices) || slices.Contains(p.Services, service)
}

// AllServices reports whether p is scoped to every service.
func (p *Principal) AllServices() bool { return p != nil && slices.Contains(p.Services, AllServices) }

// OnlyService returns the service p is scoped to when it is exactly one (not AllServices), so
// that a query naming no service can default to it.
func (p *Principal) OnlyService() (string, bool) {
	if p == nil || len(p.Services) != 1 || p.Services[0] == AllServices {
		return "", false
	}
	return p.Services[0], true
}

func (p *Principal) String() string {
	if p == nil {
		return "anonymous"
	}
	return fmt.Sprintf("%s (%s of %s)", p.User, p.Role, strings.Join(p.Services, ","))
}

type ctxKey struct{}

// NewContext returns ctx carrying p; Middleware does this, tests of handlers may too.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Principal of an authenticated request, or nil.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// ErrUnauthorized is returned by Authenticate for unknown users and wrong passwords alike.
var ErrUnauthorized = errors.New("invalid credentials")
