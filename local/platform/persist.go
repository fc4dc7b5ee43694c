package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// This file holds what lets a work dir outlive the process that uses it (Options.Persistent):
// the lock that keeps two runs off one work dir, the state file that says a cluster can be
// resumed, the clean-up of processes and folders an earlier run left, and the wait for the
// ports a resumed cluster keeps.

// lockWorkDir takes the exclusive lock of workDir (the file lock, holding the pid of its
// holder), so that two runs never share, resume or remove each other's clusters. The lock goes
// with the process, however it ends.
func lockWorkDir(workDir string) (*os.File, error) {
	path := filepath.Join(workDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock work dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock work dir: %s is in use by another run (pid %s)", workDir, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("lock work dir: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// clusterState is what a persistent cluster's state file (Cluster.Dir/cluster.json) records
// once the cluster has been ready: its kwokctl name and the ports its components were given
// (kept in kwokctl's own saved config, so a resumed cluster listens on them again).
type clusterState struct {
	KwokName string `json:"kwokName"`
	Ports    struct {
		Etcd              int `json:"etcd"`
		EtcdPeer          int `json:"etcdPeer"`
		APIServer         int `json:"apiserver"`
		ControllerManager int `json:"controllerManager"`
		Scheduler         int `json:"scheduler"`
		Kwok              int `json:"kwok"`
	} `json:"ports"`
}

func (c *Cluster) statePath() string { return filepath.Join(c.Dir, "cluster.json") }

// saveState records that the cluster is ready and may be resumed.
func (c *Cluster) saveState() error {
	var s clusterState
	s.KwokName = c.KwokName
	s.Ports.Etcd, s.Ports.EtcdPeer, s.Ports.APIServer = c.ports.etcd, c.ports.etcdPeer, c.ports.apiserver
	s.Ports.ControllerManager, s.Ports.Scheduler, s.Ports.Kwok = c.ports.controllerManager, c.ports.scheduler, c.ports.kwok
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("save cluster state: %w", err)
	}
	if err := os.Rename(tmp, c.statePath()); err != nil {
		return fmt.Errorf("save cluster state: %w", err)
	}
	return nil
}

// loadState reports whether the cluster can be resumed: its state file names it, and kwokctl's
// saved config and the etcd data are there. It then sets the ports from the state file.
func (c *Cluster) loadState() bool {
	b, err := os.ReadFile(c.statePath())
	if err != nil {
		return false
	}
	var s clusterState
	if err := json.Unmarshal(b, &s); err != nil || s.KwokName != c.KwokName {
		return false
	}
	for _, p := range []string{filepath.Join(c.KwokDir, "kwok.yaml"), c.Kubeconfig, filepath.Join(c.KwokDir, "etcd")} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	ps := s.Ports
	c.ports = ports{etcd: ps.Etcd, etcdPeer: ps.EtcdPeer, apiserver: ps.APIServer, controllerManager: ps.ControllerManager, scheduler: ps.Scheduler, kwok: ps.Kwok}
	return true
}

// killLeftovers kills the processes an earlier run of this cluster left (its components and
// its adapter, when the run died before its watchdog could act, or the watchdog was killed
// too) and waits until they are gone, so that the cluster's ports and etcd's files are free.
func (c *Cluster) killLeftovers(ctx context.Context) error {
	return killDirProcesses(ctx, map[string][]int{
		c.KwokDir: readPidFiles(filepath.Join(c.KwokDir, "pids", "*.pid")),
		c.Dir:     readPidFiles(filepath.Join(c.Dir, "adapter.pid")),
	})
}

// killDirProcesses kills the process groups of the pids (by the folder they run in, as
// killInDir) and waits until none of them runs there.
func killDirProcesses(ctx context.Context, byDir map[string][]int) error {
	for dir, pids := range byDir {
		killInDir(pids, dir)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var left []int
	err := poll(ctx, func(context.Context) (bool, error) {
		left = left[:0]
		for dir, pids := range byDir {
			for _, pid := range pids {
				if alive(pid) && runsIn(pid, dir) {
					left = append(left, pid)
				}
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for the processes of an earlier run to end (pids %v): %w", left, err)
	}
	return nil
}

// runsIn reports whether process pid runs in dir (or in dir since removed).
func runsIn(pid int, dir string) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return err == nil && (cwd == dir || cwd == dir+" (deleted)")
}

// waitPortsFree waits until every port of the cluster can be listened on again: a resumed
// cluster keeps its ports (its kubeconfig, its components' flags and its nodes name them).
// Each was free when the cluster was created, and its own processes are gone; another program
// may hold one for a moment (a client's ephemeral port), rarely longer.
func (c *Cluster) waitPortsFree(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ps := []int{c.ports.etcd, c.ports.etcdPeer, c.ports.apiserver, c.ports.controllerManager, c.ports.scheduler, c.ports.kwok}
	var busy int
	err := poll(ctx, func(context.Context) (bool, error) {
		for _, p := range ps {
			l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
			if err != nil {
				busy = p
				return false, nil
			}
			l.Close()
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("port %d of the cluster is in use by another program (stop it, or remove %s and %s to start this cluster anew, losing the jobs on it): %w",
			busy, c.Dir, c.KwokDir, err)
	}
	return nil
}

// stopEarlierWatchdog kills the watchdog an earlier run of workDir left, if it still runs, so
// that it cannot kill the processes this run starts: the earlier run's processes are this run's
// to end (killLeftovers, removeUnused).
func stopEarlierWatchdog(workDir string) {
	for _, pid := range readPidFiles(filepath.Join(workDir, "watchdog.pid")) {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), "adapter.pid") || !strings.Contains(string(cmdline), workDir) {
			continue // gone, or the pid is another program's now
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Removed sums up what Start removed of earlier runs (Options.Persistent).
type Removed struct {
	// Folders are the folders removed: kwokctl cluster folders and cluster folders that no
	// cluster of this run uses.
	Folders []string
	// Bytes is their size.
	Bytes int64
}

// removeUnused removes from the work dir what no cluster of this run uses, after killing the
// processes still running there: kwokctl cluster folders of other names (earlier runs named
// theirs with a random suffix) and cluster folders of clusters not in this run. It never
// touches the folders of this run's clusters.
func (p *Platform) removeUnused(ctx context.Context) (Removed, error) {
	var rm Removed
	keep := map[string]bool{}
	for _, c := range p.clusters {
		keep[c.KwokDir], keep[c.Dir] = true, true
	}
	var candidates []string
	clustersDir := filepath.Join(p.kwokDir, "clusters")
	entries, err := os.ReadDir(clustersDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rm, fmt.Errorf("list earlier clusters: %w", err)
	}
	for _, e := range entries {
		candidates = append(candidates, filepath.Join(clustersDir, e.Name()))
	}
	entries, err = os.ReadDir(p.workDir)
	if err != nil {
		return rm, fmt.Errorf("list earlier clusters: %w", err)
	}
	for _, e := range entries {
		dir := filepath.Join(p.workDir, e.Name())
		// A cluster folder is one with our kwokctl config in it.
		if _, err := os.Stat(filepath.Join(dir, "kwok.yaml")); e.IsDir() && err == nil {
			candidates = append(candidates, dir)
		}
	}
	candidates = slices.DeleteFunc(candidates, func(d string) bool { return keep[d] })
	if len(candidates) == 0 {
		return rm, nil
	}
	byDir := map[string][]int{}
	for _, d := range candidates {
		byDir[d] = append(readPidFiles(filepath.Join(d, "pids", "*.pid")), readPidFiles(filepath.Join(d, "adapter.pid"))...)
	}
	if err := killDirProcesses(ctx, byDir); err != nil {
		return rm, err
	}
	for _, d := range candidates {
		size := dirSize(d)
		if err := os.RemoveAll(d); err != nil {
			return rm, fmt.Errorf("remove an earlier cluster: %w", err)
		}
		rm.Folders = append(rm.Folders, d)
		rm.Bytes += size
	}
	return rm, nil
}

// dirSize is the size of the files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
