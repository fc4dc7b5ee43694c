package allinone

import (
	"sort"

	"github.com/omnibuildplatform/omni-orchestrator/shared/wiring"
)

// Constructor builds one function from the shared environment and dependencies.
type Constructor = wiring.Constructor

// eventFunctions are the functions the router delivers events to, by Knative Service name (the
// subscriber ref of their Trigger in config/). Each registers itself from its own file
// (fn_<name>.go) so functions can be added without touching Start.
var eventFunctions = map[string]Constructor{}

// registerEventFunction adds a function the router delivers to.
func registerEventFunction(service string, c Constructor) { eventFunctions[service] = c }

// httpFunctions are mounted on the public port, besides being reachable by the router.
var httpFunctions = map[string]Constructor{}

// registerHTTPFunction adds a function whose routes are served on the public port.
func registerHTTPFunction(service string, c Constructor) { httpFunctions[service] = c }

func sortedNames(m map[string]Constructor) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
