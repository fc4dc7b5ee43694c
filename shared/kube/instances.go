package kube

import "context"

// Instances returns the engine instances of arch, in configuration order (nil for an arch
// without any).
func (cs *Clusters) Instances(arch string) []*Cluster { return cs.byArch[arch] }

// HasJob reports whether job jobID's Kubernetes Job exists in namespace on the cluster.
func (c *Cluster) HasJob(ctx context.Context, namespace, jobID string) (bool, error) {
	snap, err := c.Observe(ctx, namespace, jobID)
	if err != nil {
		return false, err
	}
	return snap.Job != nil, nil
}
