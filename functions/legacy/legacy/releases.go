package legacy

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/filewatch"
)

//go:embed releases.yaml
var defaultReleases []byte

// DefaultReleases returns the built-in releases file (what an unset OMNI_LEGACY_RELEASES uses).
func DefaultReleases() []byte { return defaultReleases }

// Release is what a legacy "version" means: the product and version written into the image and
// the repositories its packages come from.
type Release struct {
	Product string   `json:"product"`
	Version string   `json:"version"`
	Repos   []string `json:"repos"`
}

// Releases maps a legacy version name (e.g. openEuler-22.03-LTS) to its release. It never
// changes once loaded; a reload makes a new one.
type Releases struct {
	byName map[string]Release
}

// releasesFile is the releases file's shape.
type releasesFile struct {
	Releases map[string]Release `json:"releases"`
}

// name is the shape of a product or version: the job type's own pattern for both.
var name = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// ParseReleases parses and checks a releases file: every release has a product, a version and
// at least one http(s) repository; names are unique ignoring case.
func ParseReleases(b []byte) (*Releases, error) {
	var f releasesFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("parse releases: %w", err)
	}
	if len(f.Releases) == 0 {
		return nil, errors.New("parse releases: no release")
	}
	rs := &Releases{byName: map[string]Release{}}
	folded := map[string]string{}
	for n, r := range f.Releases {
		if other, dup := folded[strings.ToLower(n)]; dup {
			return nil, fmt.Errorf("release %s: same name as %s but for case", n, other)
		}
		folded[strings.ToLower(n)] = n
		if !name.MatchString(r.Product) || len(r.Product) > 64 {
			return nil, fmt.Errorf("release %s: product %q: want a name such as openEuler", n, r.Product)
		}
		if !name.MatchString(r.Version) || len(r.Version) > 64 {
			return nil, fmt.Errorf("release %s: version %q: want a name such as 22.03-LTS", n, r.Version)
		}
		if len(r.Repos) == 0 {
			return nil, fmt.Errorf("release %s: no repository", n)
		}
		for _, repo := range r.Repos {
			u, err := url.Parse(repo)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("release %s: repository %q: want an http(s) URL", n, repo)
			}
		}
		rs.byName[n] = r
	}
	return rs, nil
}

// Lookup returns the release named n: exactly, else ignoring case.
func (rs *Releases) Lookup(n string) (string, Release, bool) {
	if r, ok := rs.byName[n]; ok {
		return n, r, true
	}
	for k, r := range rs.byName {
		if strings.EqualFold(k, n) {
			return k, r, true
		}
	}
	return "", Release{}, false
}

// NameOf returns the name of the release with product and version (for a job's spec), or
// product-version when no release has them.
func (rs *Releases) NameOf(product, version string) string {
	var names []string
	for k, r := range rs.byName {
		if r.Product == product && r.Version == version {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return product + "-" + version
	}
	sort.Strings(names)
	return names[0]
}

// Names returns the release names, sorted.
func (rs *Releases) Names() []string {
	out := make([]string, 0, len(rs.byName))
	for k := range rs.byName {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ReleasesEnv names the releases file.
type ReleasesEnv struct {
	// ReleasesFile is the releases file (a mounted ConfigMap key), reloaded when it changes.
	// Empty (the default): the built-in releases (functions/legacy/legacy/releases.yaml).
	ReleasesFile string `envconfig:"OMNI_LEGACY_RELEASES"`
}

// ReleaseSource holds the current releases, reloaded from their file.
type ReleaseSource struct {
	*filewatch.Value[Releases]
	path string
}

// Open loads the releases file (the built-in releases when s names none).
func (s ReleasesEnv) Open() (*ReleaseSource, error) {
	src := &ReleaseSource{path: s.ReleasesFile}
	src.Value = filewatch.NewValue(func() (*Releases, error) {
		if src.path == "" {
			return ParseReleases(defaultReleases)
		}
		b, err := os.ReadFile(src.path)
		if err != nil {
			return nil, fmt.Errorf("read releases: %w", err)
		}
		return ParseReleases(b)
	})
	if err := src.Reload(); err != nil {
		return nil, fmt.Errorf("OMNI_LEGACY_RELEASES: %w", err)
	}
	return src, nil
}

// Watch reloads the releases whenever their folder changes, until ctx is done; a broken edit
// keeps the previous ones. Run it with go.
func (s *ReleaseSource) Watch(ctx context.Context) error {
	if s.path == "" {
		return nil
	}
	logger := logging.FromContext(ctx)
	return filewatch.Loop(ctx, func() ([]string, error) { return []string{filepath.Dir(s.path)}, nil }, nil, func(why string) {
		if err := s.Reload(); err != nil {
			logger.Errorw("Reloading the legacy releases failed; keeping the previous ones", zap.String("trigger", why), zap.Error(err))
		}
	})
}
