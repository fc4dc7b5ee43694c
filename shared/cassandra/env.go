package cassandra

import (
	"context"
	"fmt"
	"strings"
)

// StoreEnv are the settings of the production store, embedded in the settings of every
// function that keeps state. Each field names its variable and default.
type StoreEnv struct {
	// Store is "cassandra://host[:port][,host…]/<keyspace>[?consistency=quorum…]" (ParseURL lists
	// the options). Required: a function in a cluster always uses Cassandra; SQLite serves only
	// the local all-in-one (`omni run`), which hands its store to the functions itself.
	Store string `envconfig:"OMNI_STORE"`
	// Username and Password authenticate to Cassandra (default none).
	Username string `envconfig:"OMNI_CASSANDRA_USERNAME"`
	Password string `envconfig:"OMNI_CASSANDRA_PASSWORD"`
}

// Config parses e.Store and adds the credentials.
func (e StoreEnv) Config() (Config, error) {
	if !strings.HasPrefix(e.Store, "cassandra:") {
		return Config{}, fmt.Errorf("OMNI_STORE %q: a function binary needs cassandra://hosts/keyspace (SQLite serves only `omni run`)", e.Store)
	}
	cfg, err := ParseURL(e.Store)
	if err != nil {
		return cfg, fmt.Errorf("OMNI_STORE: %w", err)
	}
	cfg.Username, cfg.Password = e.Username, e.Password
	return cfg, nil
}

// Open opens the store e names.
func (e StoreEnv) Open(ctx context.Context) (*Store, error) {
	cfg, err := e.Config()
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}
