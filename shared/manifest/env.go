package manifest

import (
	"context"
	"fmt"

	"github.com/omnibuildplatform/omni-orchestrator/templates"
)

// TemplatesEnv are the settings of the job type catalogue, embedded in the settings of the
// functions that render or describe job types.
type TemplatesEnv struct {
	// TemplatesDir holds the job types; empty (the default) uses the built-in set.
	TemplatesDir string `envconfig:"OMNI_TEMPLATES_DIR"`
}

// Catalogue loads the job types; from a folder, they are reloaded on file change and SIGHUP
// until ctx ends.
func (e TemplatesEnv) Catalogue(ctx context.Context) (*Source, error) {
	if e.TemplatesDir == "" {
		return NewSource(templates.FS, "")
	}
	src, err := NewSource(nil, e.TemplatesDir)
	if err != nil {
		return nil, fmt.Errorf("load job types: %w", err)
	}
	go src.WatchDir(ctx)
	go src.ReloadOnSIGHUP(ctx)
	return src, nil
}
