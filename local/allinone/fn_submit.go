package allinone

import "github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"

func init() { registerHTTPFunction(submit.Name, submit.NewFunction) }
