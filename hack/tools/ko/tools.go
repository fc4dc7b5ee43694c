//go:build tools

// Package tools pins ko and crane, built by hack/tools.sh.
package tools

import (
	_ "github.com/google/go-containerregistry/cmd/crane"
	_ "github.com/google/ko"
)
