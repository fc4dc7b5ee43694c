// Command query is the query function of omni-orchestrator (one Knative Service). It reads its
// settings from the environment (shared/wiring.Env, shared/runtime.Env; docs/configuration.md).
package main

import (
	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

func main() { wiring.Main(query.Name, query.NewFunction) }
