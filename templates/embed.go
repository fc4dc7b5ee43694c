// Package templates holds the built-in job types of omni-orchestrator, one folder per task.
//
// A task folder contains task.yaml (description, allowed architectures, steps, operator settings,
// the JSON Schema of the parameters with defaults and an example, and the list of resource
// templates) plus the resource templates themselves: text/template files that render Kubernetes
// objects. shared/manifest loads, validates and renders them; README.md describes the format.
package templates

import (
	"embed"
	"io/fs"
)

//go:embed */*.yaml
var files embed.FS

// FS is the built-in catalogue of job types: one directory per task at its root.
var FS fs.FS = files
