// Command notify is the notify function of omni-orchestrator (one Knative Service): it delivers
// job events to callbacks and subscribed webhooks, signed. Its settings are the fields of
// settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/notify/notify"
	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what notify reads from its environment.
type settings struct {
	runtime.Env
	// The store: notify reads each job and its callback URL from it, never from event data.
	cassandra.StoreEnv
	callback.GuardEnv
	notify.Settings
}

func main() { runtime.Main(notify.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	guard, err := s.GuardEnv.Guard()
	if err != nil {
		return nil, err
	}
	store, err := s.StoreEnv.Open(ctx)
	if err != nil {
		return nil, err
	}
	h, err := notify.New(ctx, s.Settings, notify.Deps{Jobs: store, Guard: guard})
	if err != nil {
		store.Close()
		return nil, err
	}
	fn := h.Function(runtime.Check{Name: "store", Func: store.Ping})
	fn.Close = store.Close
	return fn, nil
}
