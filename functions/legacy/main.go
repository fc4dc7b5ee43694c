// Command legacy is the legacy function of omni-orchestrator (one Knative Service): the
// predecessor's HTTP API under a prefix, for omni-manager, translated into calls of the /v1 API
// of submit and query (docs/compat.md). Its settings are the fields of settings
// (docs/configuration.md).
package main

import (
	"context"

	"github.com/omnibuildplatform/omni-orchestrator/functions/legacy/legacy"
	"github.com/omnibuildplatform/omni-orchestrator/shared/runtime"
)

// settings are what legacy reads from its environment.
type settings struct {
	runtime.Env
	legacy.ReleasesEnv
	legacy.Settings
}

func main() { runtime.Main(legacy.Name, build) }

func build(ctx context.Context, s *settings) (*runtime.Function, error) {
	releases, err := s.ReleasesEnv.Open()
	if err != nil {
		return nil, err
	}
	go func() { _ = releases.Watch(ctx) }()
	h, err := legacy.New(s.Settings, legacy.Deps{Releases: releases.Current})
	if err != nil {
		return nil, err
	}
	return h.Function(), nil
}
