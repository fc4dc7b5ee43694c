// Command log-archive is the log-archive function of omni-orchestrator (one Knative Service): it
// archives the step logs of ended jobs and the lines workers push. Its settings are the fields
// of settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/log-archive/logarchive"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what log-archive reads from its environment.
type settings struct {
	runtime.Env
	cassandra.StoreEnv
	kube.ClustersEnv
}

func main() { runtime.Main(logarchive.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	clusters, err := s.ClustersEnv.Load()
	if err != nil {
		return nil, err
	}
	store, err := s.StoreEnv.Open(ctx)
	if err != nil {
		return nil, err
	}
	h := logarchive.New(logarchive.Deps{Logs: store, Jobs: store, Clusters: logarchive.KubeClusters{Clusters: clusters}})
	fn := h.Function(runtime.Check{Name: "store", Func: store.Ping})
	fn.Close = store.Close
	return fn, nil
}
