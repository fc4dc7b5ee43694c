// Command submit is the submit function of omni-orchestrator (one Knative Service): it takes
// jobs over HTTP, creates their objects on a build cluster of the asked architecture, and
// cancels them. Its settings are the fields of settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/submit/submit"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/callback"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what submit reads from its environment.
type settings struct {
	runtime.Env
	cassandra.StoreEnv
	kube.ClustersEnv
	manifest.TemplatesEnv
	auth.UsersEnv
	events.SinkEnv
	queue.PolicyEnv
	callback.GuardEnv
	submit.Settings
}

func main() { runtime.Main(submit.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	guard, err := s.GuardEnv.Guard()
	if err != nil {
		return nil, err
	}
	catalogue, err := s.TemplatesEnv.Catalogue(ctx)
	if err != nil {
		return nil, err
	}
	users, err := s.UsersEnv.Load(ctx)
	if err != nil {
		return nil, err
	}
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
	policy, err := s.PolicyEnv.Open()
	if err != nil {
		return nil, err
	}
	go policy.Watch(ctx)
	h := submit.New(s.Settings, submit.Deps{
		Store:     store,
		Catalogue: func() submit.Catalogue { return catalogue.Current() },
		Clusters:  submit.KubePlacer{Clusters: clusters},
		Emitter:   emitter,
		Guard:     guard,
		Authn:     users.Middleware,
		Queue:     submit.QueueDeps{Store: store, Instances: submit.KubeInstances{Clusters: clusters}, Policy: policy.Current},
	})
	fn := h.Function(runtime.Check{Name: "store", Func: store.Ping})
	fn.Close = store.Close
	return fn, nil
}
