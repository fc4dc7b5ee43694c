// Command status-sync is the status-sync function of omni-orchestrator (one Knative Service):
// it applies the build clusters' Job and Pod events to the store and repairs what they missed.
// Its settings are the fields of settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/status-sync/statussync"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what status-sync reads from its environment.
type settings struct {
	runtime.Env
	cassandra.StoreEnv
	kube.ClustersEnv
	events.SinkEnv
	statussync.Settings
}

func main() { runtime.Main(statussync.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	clusters, err := s.ClustersEnv.Load()
	if err != nil {
		return nil, err
	}
	emitter, err := s.SinkEnv.Emitter(ctx)
	if err != nil {
		return nil, err
	}
	store, err := s.StoreEnv.Open(ctx)
	if err != nil {
		return nil, err
	}
	h := statussync.New(s.Settings, statussync.Deps{Store: store, Observer: statussync.KubeObserver{Clusters: clusters}, Emitter: emitter})
	fn := h.Function(runtime.Check{Name: "store", Func: store.Ping})
	fn.Close = store.Close
	return fn, nil
}
