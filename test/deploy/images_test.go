package deploy

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/local/cassandra/cassandratest"
)

const modulePath = "github.com/omnibuildplatform/omni-orchestrator"

// wantPlatforms are the platforms of every image (.ko.yaml defaultPlatforms).
var wantPlatforms = []string{"linux/amd64", "linux/arm64"}

// TestImages resolves config/ with ko against a registry on loopback, on a multi-arch base image
// assembled there: every ko:// image becomes an index of linux/amd64 and linux/arm64 referenced
// by digest, and the amd64 binary of each function, taken from the pushed layers, starts and
// answers /readyz.
func TestImages(t *testing.T) {
	t.Parallel()
	bin := imageTools(t)
	crane, ko := filepath.Join(bin, "crane"), filepath.Join(bin, "ko")
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	began := time.Now()

	reg := startRegistry(t, crane)
	progress(t, "registry on %s", reg)
	base := buildBaseIndex(t, ctx, crane, reg)
	progress(t, "base index %s (%s)", base, time.Since(began).Round(time.Millisecond))

	// ko resolve builds every ko:// image of config/ for both platforms (the first time a
	// cross-compilation of every dependency: minutes; then the Go build cache answers).
	progress(t, "ko resolve -f config/ (first run: several minutes)")
	kstart := time.Now()
	// The commit ko stamps in: HEAD when it starts or, if someone commits meanwhile, when it ends.
	commits := []string{gitCommit(root)}
	out := command(t, ctx, root, []string{
		"KO_DOCKER_REPO=" + reg + "/omni",
		"KO_DEFAULTBASEIMAGE=" + base,
	}, ko, "resolve", "--base-import-paths", "--sbom=none", "-f", "config/")
	progress(t, "ko resolve done in %s", time.Since(kstart).Round(time.Millisecond))

	images := resolvedImages(t, out)
	if len(images) == 0 {
		t.Fatal("ko resolve printed no image")
	}
	refRE := regexp.MustCompile(`^` + regexp.QuoteMeta(reg) + `/omni/[a-z0-9_.-]+@sha256:[0-9a-f]{64}$`)
	for _, img := range images {
		if !refRE.MatchString(img) {
			t.Errorf("resolved image %q: want %s/omni/<name>@sha256:<digest>", img, reg)
		}
	}
	// Every function has an image, named after its folder (--base-import-paths).
	byName := map[string]string{}
	for _, img := range images {
		name := strings.TrimPrefix(img[:strings.Index(img, "@")], reg+"/omni/")
		byName[name] = img
	}
	fns := functionNames(t)
	for _, fn := range fns {
		if byName[fn] == "" {
			t.Errorf("no image of function %s in the resolved config/ (images: %v)", fn, images)
		}
	}
	if byName["omni"] == "" {
		t.Errorf("no image of cmd/omni (the schema Job) in the resolved config/")
	}

	for _, img := range images {
		if got := indexPlatforms(t, ctx, crane, img); strings.Join(got, ",") != strings.Join(wantPlatforms, ",") {
			t.Errorf("%s: platforms %v, want an index of %v", img, got, wantPlatforms)
		}
	}
	if t.Failed() {
		return
	}

	commits = append(commits, gitCommit(root))
	for _, fn := range fns {
		t.Run(fn, func(t *testing.T) {
			exe := extractBinary(t, ctx, crane, byName[fn], "linux/amd64", "/ko-app/"+fn)
			startFromImage(t, fn, exe, commits)
		})
	}
	progress(t, "done in %s", time.Since(began).Round(time.Millisecond))
}

// startRegistry runs `crane registry serve` on a free loopback port and returns host:port.
func startRegistry(t *testing.T, crane string) string {
	t.Helper()
	cmd := exec.Command(crane, "registry", "serve", "--address", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	// "serving on port N", then request logs, which must be drained.
	portc := make(chan string, 1)
	go func() {
		defer close(done)
		defer func() { _ = cmd.Wait() }()
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`serving on port (\d+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case portc <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case port := <-portc:
		return "127.0.0.1:" + port
	case <-done:
		t.Fatal("crane registry serve exited before serving")
	case <-time.After(30 * time.Second):
		t.Fatal("crane registry serve printed no port within 30s")
	}
	return ""
}

// buildBaseIndex pushes a base image index of wantPlatforms to reg: one layer with the host's CA
// certificates (what the functions need of a base: TLS to Cassandra, registries, webhooks),
// given each platform, and returns its reference.
func buildBaseIndex(t *testing.T, ctx context.Context, crane, reg string) string {
	t.Helper()
	dir := t.TempDir()
	layer := filepath.Join(dir, "ca-certificates.tar")
	if err := writeCALayer(layer); err != nil {
		t.Fatal(err)
	}
	command(t, ctx, dir, nil, crane, "append", "--oci-empty-base", "-f", layer, "-t", reg+"/base:layer")
	var manifests []string
	for _, p := range wantPlatforms {
		tag := reg + "/base:" + strings.ReplaceAll(p, "/", "-")
		command(t, ctx, dir, nil, crane, "mutate", reg+"/base:layer", "--set-platform", p, "-t", tag)
		manifests = append(manifests, "-m", tag)
	}
	ref := reg + "/base:multi"
	command(t, ctx, dir, nil, crane, append(append([]string{"index", "append"}, manifests...), "-t", ref)...)
	return ref
}

// writeCALayer writes a tar with /etc/ssl/certs/ca-certificates.crt from this machine (or an
// empty bundle when it has none: the tests never dial TLS).
func writeCALayer(path string) error {
	pem, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if errors.Is(err, os.ErrNotExist) {
		pem = nil
	} else if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	for _, d := range []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Size: int64(len(pem))}); err != nil {
		return err
	}
	if _, err := tw.Write(pem); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// resolvedImages returns the distinct `image:` values of every container in the documents ko
// printed.
func resolvedImages(t *testing.T, out []byte) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var v any
		if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("ko resolve output: %v", err)
		}
		walkImages(v, func(img string) { seen[img] = true })
	}
	var imgs []string
	for img := range seen {
		if strings.HasPrefix(img, "ko://") {
			t.Errorf("ko resolve left %s unresolved", img)
		}
		imgs = append(imgs, img)
	}
	sort.Strings(imgs)
	return imgs
}

// walkImages calls fn with every "image" string of v (the image of each container).
func walkImages(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		if img, ok := v["image"].(string); ok {
			fn(img)
		}
		for _, c := range v {
			walkImages(c, fn)
		}
	case []any:
		for _, c := range v {
			walkImages(c, fn)
		}
	}
}

// indexPlatforms returns the sorted platforms of the index img, or nil if img is not an index.
func indexPlatforms(t *testing.T, ctx context.Context, crane, img string) []string {
	t.Helper()
	b := command(t, ctx, "", nil, crane, "manifest", img)
	var idx struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("%s: manifest: %v", img, err)
	}
	if !strings.Contains(idx.MediaType, "index") && !strings.Contains(idx.MediaType, "manifest.list") {
		t.Errorf("%s: media type %s, want an image index", img, idx.MediaType)
		return nil
	}
	var ps []string
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			t.Errorf("%s: manifest %s has no platform", img, m.Digest)
			continue
		}
		ps = append(ps, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	sort.Strings(ps)
	return ps
}

// extractBinary writes the file at path of img's platform image (its layers flattened by crane
// export) to a temporary file and returns it.
func extractBinary(t *testing.T, ctx context.Context, crane, img, platform, path string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, crane, "export", "--platform", platform, img, "-")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), filepath.Base(path))
	found := false
	tr := tar.NewReader(stdout)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("crane export %s: %v", img, err)
		}
		if "/"+strings.TrimPrefix(h.Name, "/") != path || h.Typeflag != tar.TypeReg {
			continue
		}
		f, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, tr); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		found = true
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("crane export %s: %v\n%s", img, err, stderr.String())
	}
	if !found {
		t.Fatalf("%s (%s) has no %s", img, platform, path)
	}
	return exe
}

// startFromImage runs a function binary taken from its image with a throw-away configuration
// (a keyspace of the local Cassandra, an empty htpasswd, no clusters, no subscriptions), waits
// for /readyz to answer 200,
// checks the version it logged, then stops it with SIGTERM.
func startFromImage(t *testing.T, fn, exe string, commits []string) {
	store := cassandratest.StoreURL(cassandratest.Shared(t))
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "clusters"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "htpasswd"), nil, 0o644))
	must(os.WriteFile(filepath.Join(dir, "users.yaml"), []byte("users: {}\n"), 0o644))
	port := freePort(t)
	cmd := exec.Command(exe)
	cmd.Dir = dir
	cmd.Env = []string{
		"PORT=" + fmt.Sprint(port),
		"HOME=" + dir,
		"OMNI_STORE=" + store,
		"OMNI_HTPASSWD=" + filepath.Join(dir, "htpasswd"),
		"OMNI_USERS=" + filepath.Join(dir, "users.yaml"),
		"OMNI_CLUSTERS_DIR=" + filepath.Join(dir, "clusters"),
		"OMNI_NOTIFY_SUBSCRIPTIONS=" + filepath.Join(dir, "subscriptions.yaml"),
	}
	logPath := filepath.Join(dir, "log")
	logf, err := os.Create(logPath)
	must(err)
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	logTail := func() string { b, _ := os.ReadFile(logPath); return tail(string(b), 20) }

	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	began := time.Now()
	var last error
	err = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			stopped = true
			return false, fmt.Errorf("exited before it was ready: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			last = err
			return false, nil
		}
		resp.Body.Close()
		last = fmt.Errorf("/readyz answered %s", resp.Status)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%s: not ready: %v (last: %v)\n%s", fn, err, last, logTail())
	}
	t.Logf("%s from its image: /readyz 200 after %s", fn, time.Since(began).Round(time.Millisecond))

	must(cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("%s: exit after SIGTERM: %v\n%s", fn, err, logTail())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop within 30s of SIGTERM\n%s", fn, logTail())
	}

	// The version ldflags of .ko.yaml reached the binary.
	b, _ := os.ReadFile(logPath)
	var start struct {
		Msg, Function, Version, Commit string
	}
	for _, line := range strings.Split(string(b), "\n") {
		if json.Unmarshal([]byte(line), &start) == nil && start.Msg == "starting" {
			break
		}
	}
	switch {
	case start.Msg != "starting":
		t.Errorf("%s logged no start line with version and commit:\n%s", fn, logTail())
	case commits[0] != "" && !slices.Contains(commits, strings.TrimSuffix(start.Commit, "-dirty")):
		t.Errorf("%s: logged commit %q, want %s (from the ldflags of .ko.yaml)", fn, start.Commit, commits[0])
	case start.Version == "" || start.Version == "dev" && commits[0] != "":
		t.Errorf("%s: logged version %q: the ldflags of .ko.yaml did not set it", fn, start.Version)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// gitCommit is HEAD of the checkout, or "" without git.
func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// functionNames are the folders of functions/ that hold a main package.
func functionNames(t testing.TB) []string {
	t.Helper()
	mains, _ := filepath.Glob(filepath.Join(repoRoot(t), "functions", "*", "main.go"))
	var names []string
	for _, m := range mains {
		names = append(names, filepath.Base(filepath.Dir(m)))
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no functions/*/main.go")
	}
	return names
}
