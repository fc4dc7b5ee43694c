// Package config embeds the Knative and Kubernetes manifests of this folder, which operators
// apply with `ko apply -f config/`, so that the local all-in-one router delivers by exactly the
// Broker, Trigger and PingSource manifests that are deployed.
package config

import "embed"

// FS holds every manifest of config/ (top level).
//
//go:embed *.yaml
var FS embed.FS
