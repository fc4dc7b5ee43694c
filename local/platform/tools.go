package platform

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/omnibuildplatform/omni-orchestrator/local/internal/files"
)

// Binaries are the programs the platform runs; hack/tools.sh builds them all into one folder.
var Binaries = []string{
	"etcd",
	"kube-apiserver",
	"kube-controller-manager",
	"kube-scheduler",
	"kubectl",
	"apiserver_receive_adapter",
	"kwok",
	"kwokctl",
}

// ToolsBinEnv names an environment variable that, when set, is the folder of prebuilt tools:
// Tools then only checks it and never builds.
const ToolsBinEnv = "OMNI_TOOLS_BIN"

var toolsMu sync.Mutex

// Tools returns the folder that holds every program of Binaries. Unless OMNI_TOOLS_BIN names
// that folder, it runs hack/tools.sh when one of them is missing from the tools cache; the first
// build takes about ten minutes and prints its progress to stderr.
func Tools(ctx context.Context) (binDir string, err error) {
	return tools(ctx, os.Stderr)
}

func tools(ctx context.Context, progress io.Writer) (string, error) {
	toolsMu.Lock()
	defer toolsMu.Unlock()
	if dir := os.Getenv(ToolsBinEnv); dir != "" {
		if missing := missingBinaries(dir); len(missing) > 0 {
			return "", fmt.Errorf("%s=%s lacks %s (run hack/tools.sh to build them)", ToolsBinEnv, dir, strings.Join(missing, ", "))
		}
		return dir, nil
	}
	if dir, err := cacheBinDir(); err == nil && len(missingBinaries(dir)) == 0 {
		return dir, nil
	}
	script, err := files.Script("tools.sh")
	if err != nil {
		return "", fmt.Errorf("tools missing and hack/tools.sh was %w (run from the checkout, or set %s)", err, ToolsBinEnv)
	}
	if progress == nil {
		progress = io.Discard
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(progress, &stderr)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build tools with %s: %w\n%s", script, err, files.Tail(stderr.Bytes(), tailLines))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	dir := lines[len(lines)-1]
	if missing := missingBinaries(dir); len(missing) > 0 {
		return "", fmt.Errorf("%s printed %q, which lacks %s", script, dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

// cacheBinDir is where hack/tools.sh puts the tools (keep in step with the script).
func cacheBinDir() (string, error) {
	cache := os.Getenv("OMNI_TOOLS_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(base, "omni-orchestrator", "tools")
	}
	return filepath.Join(cache, "bin"), nil
}

func missingBinaries(dir string) []string {
	var missing []string
	for _, b := range Binaries {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}
