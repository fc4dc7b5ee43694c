package allinone

import "github.com/omnibuildplatform/omni-orchestrator/functions/query/query"

func init() { registerHTTPFunction(query.Name, query.NewFunction) }
