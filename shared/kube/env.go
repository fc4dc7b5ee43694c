package kube

import "fmt"

// ClustersEnv are the settings of the build clusters, embedded in the settings of every function
// that talks to them.
type ClustersEnv struct {
	// ClustersDir holds the per-arch cluster configs x86_64.yaml and aarch64.yaml. Default /etc/omni/clusters.
	ClustersDir string `envconfig:"OMNI_CLUSTERS_DIR" default:"/etc/omni/clusters"`
}

// Load loads the clusters e names.
func (e ClustersEnv) Load() (*Clusters, error) {
	cs, err := LoadDir(e.ClustersDir)
	if err != nil {
		return nil, fmt.Errorf("load clusters: %w", err)
	}
	return cs, nil
}
