// Command notify is the notify function of omni-orchestrator (one Knative Service): it delivers
// job events to callbacks and subscribed webhooks, signed. Its settings are the fields of
// settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/notify/notify"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what notify reads from its environment.
type settings struct {
	runtime.Env
	notify.Settings
}

func main() { runtime.Main(notify.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	h, err := notify.New(ctx, s.Settings)
	if err != nil {
		return nil, err
	}
	return h.Function(), nil
}
