package cassandra

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// Version is the pinned Cassandra release that hack/cassandra.sh fetches (keep in step with it).
const Version = "5.0.9"

// LibEnv names an environment variable that, when set, is a folder holding cassandra-all and its
// runtime dependencies as jars: Jars then only checks it and never fetches.
const LibEnv = "OMNI_CASSANDRA_LIB"

var jarsMu sync.Mutex

// Jars returns the folder of the jars of Cassandra Version. Unless OMNI_CASSANDRA_LIB names one,
// it runs hack/cassandra.sh when they are missing from the tools cache; the first fetch takes
// under a minute and prints its progress to progress (nil: discarded).
func Jars(ctx context.Context, progress io.Writer) (string, error) {
	jarsMu.Lock()
	defer jarsMu.Unlock()
	if dir := os.Getenv(LibEnv); dir != "" {
		if err := checkJars(dir); err != nil {
			return "", fmt.Errorf("%s=%s: %w", LibEnv, dir, err)
		}
		return dir, nil
	}
	if dir, err := cachedJars(); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), ".complete")); err == nil && checkJars(dir) == nil {
			return dir, nil
		}
	}
	script, err := files.Script("cassandra.sh")
	if err != nil {
		return "", fmt.Errorf("Cassandra %s is not in the tools cache and hack/cassandra.sh was %w (run from the checkout, or set %s)", Version, err, LibEnv)
	}
	if progress == nil {
		progress = io.Discard
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(progress, &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("fetch Cassandra %s with %s: %w\n%s", Version, script, err, files.Tail(stderr.Bytes(), 20))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := lines[len(lines)-1]
	if err := checkJars(dir); err != nil {
		return "", fmt.Errorf("%s printed %q: %w", script, dir, err)
	}
	return dir, nil
}

// cachedJars is where hack/cassandra.sh puts the jars (keep in step with the script).
func cachedJars() (string, error) {
	cache := os.Getenv("OMNI_TOOLS_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(base, "omni-orchestrator", "tools")
	}
	return filepath.Join(cache, "cassandra-"+Version, "lib"), nil
}

func checkJars(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "cassandra-all-"+Version+".jar")); err != nil {
		return fmt.Errorf("no cassandra-all-%s.jar (run hack/cassandra.sh to fetch it)", Version)
	}
	return nil
}

// javaVersion matches the first line of `java -version`: openjdk version "17.0.15" 2025-04-15.
var javaVersion = regexp.MustCompile(`version "(\d+)(?:\.(\d+))?`)

// Java returns the java binary that runs Cassandra ($JAVA_HOME/bin/java, else java on the
// PATH) after checking that it is Java 17, the Java that the JVM flags of Start are for
// (Cassandra 5.0 also runs on 11, with other flags).
func Java(ctx context.Context) (string, error) {
	const install = "Cassandra " + Version + " needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless; or set JAVA_HOME to a JDK 17)"
	java := "java"
	if home := os.Getenv("JAVA_HOME"); home != "" {
		java = filepath.Join(home, "bin", "java")
	}
	path, err := exec.LookPath(java)
	if err != nil {
		return "", fmt.Errorf("find java: %w: %s", err, install)
	}
	out, err := exec.CommandContext(ctx, path, "-version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("run %s -version: %w: %s\n%s", path, err, install, out)
	}
	m := javaVersion.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("read the version of %s from %q: %s", path, firstLine(out), install)
	}
	major, _ := strconv.Atoi(string(m[1]))
	if major == 1 && len(m[2]) > 0 { // 1.8 style
		major, _ = strconv.Atoi(string(m[2]))
	}
	if major != 17 {
		return "", fmt.Errorf("%s is Java %d: %w: %s", path, major, errUnsupportedJava, install)
	}
	return path, nil
}

var errUnsupportedJava = errors.New("unsupported Java version")

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}
