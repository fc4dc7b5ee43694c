// Command notify is the notify function of omni-orchestrator (one Knative Service). It reads its
// settings from the environment (functions/notify/notify.Env, shared/runtime.Env); it needs
// neither the store nor the build clusters.
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/notify/notify"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

func main() { runtime.Main(notify.Name, build) }

func build(ctx context.Context) (*runtime.Function, error) {
	env, err := notify.ReadEnv()
	if err != nil {
		return nil, err
	}
	return notify.New(ctx, env)
}
