// Command log-archive is the log-archive function of omni-orchestrator (one Knative Service). It
// reads its settings from the environment (shared/wiring.Env, shared/runtime.Env).
package main

import (
	"context"

	"github.com/kelseyhightower/envconfig"

	"github.com/omnibuildplatform/omni-orchestrator/functions/log-archive/logarchive"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

func main() { runtime.Main(logarchive.Name, build) }

func build(ctx context.Context) (*runtime.Function, error) {
	var env wiring.Env
	if err := envconfig.Process("", &env); err != nil {
		return nil, err
	}
	d, err := env.Build(ctx)
	if err != nil {
		return nil, err
	}
	fn, err := logarchive.NewFunction(ctx, env, d)
	if err != nil {
		_ = d.Store.Close()
		return nil, err
	}
	fn.Close = d.Store.Close
	return fn, nil
}
