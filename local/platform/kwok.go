package platform

import (
	"bytes"
	"embed"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"

	"sigs.k8s.io/yaml"
)

// stages are kwok Stage documents: node-stages.yaml is copied from kwok's node/fast and
// node/heartbeat, pod-stages.yaml is ours (see its header).
//
//go:embed kwok/node-stages.yaml kwok/pod-stages.yaml
var stages embed.FS

// nodeLeaseSeconds is the duration of the fake nodes' Leases.
const nodeLeaseSeconds = 10

// kwokConfig renders the -c file of kwokctl create cluster: the kwokctl options (binaries,
// ports), then the stages and the ClusterLogs that kwok-controller reads from the same file.
func (c *Cluster) kwokConfig() ([]byte, error) {
	bin := func(name string) string { return filepath.Join(c.p.binDir, name) }
	kwokctl := map[string]any{
		"apiVersion": "config.kwok.x-k8s.io/v1alpha1",
		"kind":       "KwokctlConfiguration",
		"options": map[string]any{
			"runtime":                     "binary",
			"etcdBinary":                  bin("etcd"),
			"kubeApiserverBinary":         bin("kube-apiserver"),
			"kubeControllerManagerBinary": bin("kube-controller-manager"),
			"kubeSchedulerBinary":         bin("kube-scheduler"),
			"kubectlBinary":               bin("kubectl"),
			"kwokControllerBinary":        bin("kwok"),
			"etcdPort":                    c.ports.etcd,
			"etcdPeerPort":                c.ports.etcdPeer,
			"kubeApiserverPort":           c.ports.apiserver,
			"kubeControllerManagerPort":   c.ports.controllerManager,
			"kubeSchedulerPort":           c.ports.scheduler,
			"kwokControllerPort":          c.ports.kwok,
		},
		// The API server reaches "kubelets" (kwok) for pods/log by the node's InternalIP, which
		// our nodes set to 127.0.0.1; their host names do not resolve.
		"componentsPatches": []any{map[string]any{
			"name":      "kube-apiserver",
			"extraArgs": []any{map[string]any{"key": "kubelet-preferred-address-types", "value": "InternalIP"}},
		}, map[string]any{
			// kwok manages a node while it holds the node's Lease. A cluster resumed after a
			// crash (Options.Persistent) has a new kwok whose lease the dead one still holds:
			// kwokctl's 200 s would stop every pod that long. (kwok renews it every quarter.)
			"name":      "kwok-controller",
			"extraArgs": []any{map[string]any{"key": "node-lease-duration-seconds", "value": strconv.Itoa(nodeLeaseSeconds)}},
		}},
	}
	logs := map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "ClusterLogs",
		"metadata":   map[string]any{"name": "omni-container-logs"},
		"spec": map[string]any{
			"logs": c.logGroups(),
		},
	}
	var out bytes.Buffer
	for _, doc := range []any{kwokctl, logs} {
		b, err := yaml.Marshal(doc)
		if err != nil {
			return nil, fmt.Errorf("render kwok config: %w", err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	for _, name := range []string{"kwok/node-stages.yaml", "kwok/pod-stages.yaml"} {
		b, err := stages.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes(), nil
}

// logGroups are the ClusterLogs groups: Options.ContainerLogs's containers first (kwok serves
// a container the first group that names it), then every other container's LogsFile.
func (c *Cluster) logGroups() []any {
	names := make([]string, 0, len(c.p.opts.ContainerLogs))
	for name := range c.p.opts.ContainerLogs {
		names = append(names, name)
	}
	sort.Strings(names)
	groups := make([]any, 0, len(names)+1)
	for _, name := range names {
		groups = append(groups, map[string]any{"containers": []any{name}, "logsFile": c.p.opts.ContainerLogs[name]})
	}
	return append(groups, map[string]any{"logsFile": c.LogsFile})
}
