// Command query is the query function of omni-orchestrator (one Knative Service): jobs, lists,
// job types, logs (pages, follow, download) and the OpenAPI document. Its settings are the
// fields of settings (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/query/query"
	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
	"github.com/omnibuildplatform/omni-orchestrator/shared/cassandra"
	"github.com/omnibuildplatform/omni-orchestrator/shared/kube"
	"github.com/omnibuildplatform/omni-orchestrator/shared/manifest"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what query reads from its environment.
type settings struct {
	runtime.Env
	cassandra.StoreEnv
	kube.ClustersEnv
	manifest.TemplatesEnv
	auth.UsersEnv
	query.Settings
}

func main() { runtime.Main(query.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
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
	store, err := s.StoreEnv.Open(ctx)
	if err != nil {
		return nil, err
	}
	h, err := query.New(ctx, s.Settings, query.Deps{
		Store:     store,
		Logs:      store,
		Catalogue: func() query.Catalogue { return catalogue.Current() },
		Live:      query.KubeLogs{Clusters: clusters},
		Authn:     users.Middleware,
	})
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	fn := h.Function(runtime.Check{Name: "store", Func: store.Ping})
	fn.Close = store.Close
	return fn, nil
}
