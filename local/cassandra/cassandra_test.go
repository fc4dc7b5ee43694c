package cassandra_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra"
)

// TestStartStop starts a real node, checks that it answers CQL on a port of its own with the
// pinned release and takes writes and reads, then that Stop ends the JVM and removes the data
// but keeps the log.
func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	began := time.Now()
	n, err := cassandra.Start(t.Context(), cassandra.Options{Dir: dir, Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = n.Stop() })
	t.Logf("node up in %s at %s", time.Since(began).Round(100*time.Millisecond), n.Host())
	defer func() {
		if t.Failed() {
			t.Logf("%s", n.LogTail(60))
		}
	}()

	for _, port := range []int{n.NativePort(), n.StoragePort()} {
		if port == 9042 || port == 7000 || port == 7199 {
			t.Errorf("node uses the default port %d; want a free one", port)
		}
	}
	c := gocql.NewCluster(n.Host())
	c.Timeout = 20 * time.Second
	s, err := c.CreateSession()
	if err != nil {
		t.Fatalf("connect to %s: %v", n.Host(), err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var version string
	if err := s.Query(`SELECT release_version FROM system.local`).WithContext(ctx).Scan(&version); err != nil {
		t.Fatalf("read release_version: %v", err)
	}
	if version != cassandra.Version {
		t.Errorf("release_version = %q, want %q", version, cassandra.Version)
	}
	for _, stmt := range []string{
		`CREATE KEYSPACE launcher_test WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`,
		`CREATE TABLE launcher_test.kv (k text PRIMARY KEY, v text)`,
		`INSERT INTO launcher_test.kv (k, v) VALUES ('a', 'b')`,
	} {
		if err := s.Query(stmt).WithContext(ctx).Exec(); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	var v string
	if err := s.Query(`SELECT v FROM launcher_test.kv WHERE k = 'a'`).WithContext(ctx).Scan(&v); err != nil || v != "b" {
		t.Fatalf("read back: %q, %v; want \"b\"", v, err)
	}
	s.Close()

	if err := n.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if !n.Exited() {
		t.Errorf("the JVM still runs after Stop")
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("data folder after Stop: %v; want it removed", err)
	}
	log, err := os.ReadFile(n.LogPath())
	if err != nil {
		t.Fatalf("log after Stop: %v", err)
	}
	if !strings.Contains(string(log), "Starting listening for CQL clients") {
		t.Errorf("log %s lacks the CQL start line:\n%s", n.LogPath(), n.LogTail(20))
	}
}

// TestJava checks the Java the node runs on: a missing or wrong Java is an error that says
// what to install, never a skip.
func TestJava(t *testing.T) {
	if _, err := cassandra.Java(t.Context()); err != nil {
		t.Fatalf("Java: %v", err)
	}
	t.Setenv("JAVA_HOME", t.TempDir())
	_, err := cassandra.Java(t.Context())
	if err == nil || !strings.Contains(err.Error(), "apt-get install openjdk-17-jre-headless") {
		t.Errorf("Java with JAVA_HOME holding no java: %v; want an error saying what to install", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
