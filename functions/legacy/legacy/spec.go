package legacy

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The job types the legacy API creates.
const (
	TaskRelease = "buildimagefromrelease"
	TaskISO     = "buildimagefromiso"
)

// paramUserID is the job parameter that keeps the legacy userID (both image job types take it
// and pass it to their upload step).
const paramUserID = "userID"

// errUnrecognized is the predecessor's answer to an engine or task it does not know.
var errUnrecognized = jobs.Invalid("", "unrecognized job kind")

// CreateRequest is the body of the legacy create. Field names match ignoring case (as the
// predecessor's decoding did); every field is required.
type CreateRequest struct {
	Service string          `json:"service"`
	Task    string          `json:"task"`
	Domain  string          `json:"domain"`
	UserID  string          `json:"userID"`
	Spec    json.RawMessage `json:"spec"`
	Engine  string          `json:"engine"`
	// Labels is an extension omni-manager never sends: Kubernetes labels for the job, as the
	// labels of POST /v1/jobs.
	Labels map[string]string `json:"labels,omitempty"`
}

// V1Request is the body of POST /v1/jobs that a legacy create becomes.
type V1Request struct {
	Service    string            `json:"service"`
	Task       string            `json:"task"`
	Domain     string            `json:"domain"`
	Arch       string            `json:"arch"`
	Parameters map[string]any    `json:"parameters"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// decodeCase decodes JSON b into v; encoding/json matches object keys to struct fields ignoring
// case, exactly what the predecessor accepted. Unknown fields are ignored, as it did.
func decodeCase(b []byte, v any, field string) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if err := d.Decode(v); err != nil {
		return jobs.Invalid(field, "not valid JSON of the expected shape: %v", err)
	}
	if d.More() {
		return jobs.Invalid(field, "more than one JSON value")
	}
	return nil
}

// ToV1 maps a legacy create request onto POST /v1/jobs, with the releases rs for
// buildimagefromrelease.
func ToV1(req CreateRequest, rs *Releases) (V1Request, error) {
	for _, f := range []struct{ name, v string }{
		{"service", req.Service}, {"task", req.Task}, {"domain", req.Domain},
		{"userID", req.UserID}, {"engine", req.Engine},
	} {
		if strings.TrimSpace(f.v) == "" {
			return V1Request{}, jobs.Invalid(f.name, "required")
		}
	}
	if s := bytes.TrimSpace(req.Spec); len(s) == 0 || bytes.Equal(s, []byte("null")) {
		return V1Request{}, jobs.Invalid("spec", "required")
	}
	if req.Engine != Engine {
		return V1Request{}, errUnrecognized
	}
	out := V1Request{Service: req.Service, Task: req.Task, Domain: req.Domain, Labels: req.Labels}
	var err error
	switch req.Task {
	case TaskRelease:
		out.Arch, out.Parameters, err = releaseParameters(req.Spec, rs)
	case TaskISO:
		out.Arch, out.Parameters, err = isoParameters(req.Spec)
	default:
		return V1Request{}, errUnrecognized
	}
	if err != nil {
		return V1Request{}, err
	}
	out.Parameters[paramUserID] = req.UserID
	return out, nil
}

// Arch maps a legacy architecture (x86, x86_64 or aarch64, any case) to the build arch.
func Arch(field, a string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(a)) {
	case "x86", "x86_64":
		return "x86_64", nil
	case "aarch64":
		return "aarch64", nil
	case "":
		return "", jobs.Invalid(field, "required: x86, x86_64 or aarch64")
	}
	return "", jobs.Invalid(field, "unknown architecture %q: want x86, x86_64 or aarch64", a)
}

// releaseSpec is the spec of a legacy buildimagefromrelease.
type releaseSpec struct {
	Version      string   `json:"version"`
	Packages     []string `json:"packages"`
	Format       string   `json:"format"`
	Architecture string   `json:"architecture"`
}

// legacyFormat is the predecessor's name of the Calamares installer ISO.
const legacyFormat = "installer-iso"

func releaseParameters(raw json.RawMessage, rs *Releases) (string, map[string]any, error) {
	var s releaseSpec
	if err := decodeCase(raw, &s, "spec"); err != nil {
		return "", nil, err
	}
	arch, err := Arch("spec.architecture", s.Architecture)
	if err != nil {
		return "", nil, err
	}
	if s.Version == "" {
		return "", nil, jobs.Invalid("spec.version", "required")
	}
	_, rel, ok := rs.Lookup(s.Version)
	if !ok {
		return "", nil, jobs.Invalid("spec.version", "unknown version %q (known: %s)", s.Version, strings.Join(rs.Names(), ", "))
	}
	if len(s.Packages) == 0 {
		return "", nil, jobs.Invalid("spec.packages", "required: at least one package")
	}
	// The predecessor took duplicates; the job type's schema does not.
	seen := map[string]bool{}
	pkgs := make([]any, 0, len(s.Packages))
	for _, p := range s.Packages {
		if !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	repos := make([]any, len(rel.Repos))
	for i, r := range rel.Repos {
		repos[i] = r
	}
	params := map[string]any{"product": rel.Product, "version": rel.Version, "packages": pkgs, "repos": repos}
	switch f := strings.ToLower(strings.TrimSpace(s.Format)); f {
	case "":
	case legacyFormat:
		params["format"] = "calamares-iso"
	default:
		params["format"] = f
	}
	return arch, params, nil
}

// isoSpec is the spec of a legacy buildimagefromiso.
type isoSpec struct {
	KickStart *struct {
		Content string `json:"content"`
		Name    string `json:"name"`
	} `json:"kickStart"`
	Image *struct {
		URL          string `json:"url"`
		Checksum     string `json:"checksum"`
		Name         string `json:"name"`
		Architecture string `json:"architecture"`
	} `json:"image"`
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func isoParameters(raw json.RawMessage) (string, map[string]any, error) {
	var s isoSpec
	if err := decodeCase(raw, &s, "spec"); err != nil {
		return "", nil, err
	}
	if s.Image == nil {
		return "", nil, jobs.Invalid("spec.image", "required")
	}
	if s.KickStart == nil || s.KickStart.Content == "" {
		return "", nil, jobs.Invalid("spec.kickStart.content", "required")
	}
	arch, err := Arch("spec.image.architecture", s.Image.Architecture)
	if err != nil {
		return "", nil, err
	}
	u, err := url.Parse(s.Image.URL)
	if s.Image.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, jobs.Invalid("spec.image.url", "want an http(s) URL")
	}
	if !sha256Hex.MatchString(s.Image.Checksum) {
		return "", nil, jobs.Invalid("spec.image.checksum", "want a SHA-256 checksum: 64 lowercase hex digits")
	}
	return arch, map[string]any{"isoUrl": s.Image.URL, "isoSha256": s.Image.Checksum, "kickstart": s.KickStart.Content}, nil
}

// SpecOf rebuilds the legacy spec of j from its parameters (the layer keeps no copy of what was
// sent): for the image job types the fields the predecessor had, normalised (packages without
// duplicates, the architecture as x86_64 or aarch64, the Calamares ISO as installer-iso, the
// release's name from rs), file names left out; for any other job type its parameters.
func SpecOf(j *jobs.Job, rs *Releases) map[string]any {
	p := j.Parameters
	str := func(k string) string { s, _ := p[k].(string); return s }
	switch j.Task {
	case TaskRelease:
		format := str("format")
		if format == "calamares-iso" {
			format = legacyFormat
		}
		return map[string]any{
			"version": rs.NameOf(str("product"), str("version")), "packages": p["packages"],
			"format": format, "architecture": j.Arch,
		}
	case TaskISO:
		return map[string]any{
			"kickStart": map[string]any{"content": str("kickstart")},
			"image":     map[string]any{"url": str("isoUrl"), "checksum": str("isoSha256"), "architecture": j.Arch},
		}
	}
	out := make(map[string]any, len(p))
	for k, v := range p {
		if k != paramUserID {
			out[k] = v
		}
	}
	return out
}
