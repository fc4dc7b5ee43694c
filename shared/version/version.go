// Package version holds the version and commit the binaries were built from, set by the linker:
// ko (.ko.yaml) passes -X for both; a plain `go build` leaves the defaults.
package version

// Version is the release (a git tag, or $OMNI_VERSION at image build time). Default "dev".
var Version = "dev"

// Commit is the full git commit hash, suffixed "-dirty" when the tree had changes. Default "unknown".
var Commit = "unknown"
