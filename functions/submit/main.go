// Command submit is the submit function of omni-orchestrator (one Knative Service). It reads its
// settings from the environment (shared/wiring.Env, shared/runtime.Env; docs/configuration.md).
package main

import (
	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

func main() { wiring.Main(submit.Name, submit.NewFunction) }
