package kube

import "context"

// Instances returns the engine instances of arch, in configuration order (nil for an arch
// without any).
func (cs *Clusters) Instances(arch string) []*Cluster { return cs.byArch[arch] }

// HasJob reports whether the Kubernetes Job of one attempt of a job exists in namespace on the
// cluster; key is names.AttemptKey(job id, attempt).
func (c *Cluster) HasJob(ctx context.Context, namespace, key string) (bool, error) {
	snap, err := c.Observe(ctx, namespace, key)
	if err != nil {
		return false, err
	}
	return snap.Job != nil, nil
}
