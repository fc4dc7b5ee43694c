package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/validation"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/events"
	"github.com/omnibuildplatform/omni-orchestrator/shared/filewatch"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// File is the subscriptions file (docs/notify.md).
type File struct {
	Subscriptions []Subscription `json:"subscriptions"`
}

// Subscription is one configured receiver of job events.
type Subscription struct {
	// Name identifies the subscription in the X-Omni-Receiver header, logs and metrics (a DNS label, unique).
	Name string `json:"name"`
	// URL is where events are POSTed (http or https).
	URL string `json:"url"`
	// Exactly one of Secret, SecretRef and SecretEnv gives the HMAC secret. SecretRef is a file
	// (a key of a mounted Secret; relative paths are relative to the subscriptions file's
	// folder), SecretEnv an environment variable, Secret the secret itself (only for local use:
	// a ConfigMap is no place for secrets).
	Secret    string `json:"secret,omitempty"`
	SecretRef string `json:"secretRef,omitempty"`
	SecretEnv string `json:"secretEnv,omitempty"`
	// Match selects the events; empty lists match anything.
	Match Match `json:"match,omitempty"`

	url    *url.URL
	secret []byte
	// secretPath is the resolved SecretRef, watched for rotation.
	secretPath string
}

// Match selects job events by the job's service, task, domain and status (after the change)
// and by event type. Each list matches when it is empty or holds the value.
type Match struct {
	Services []string      `json:"services,omitempty"`
	Tasks    []string      `json:"tasks,omitempty"`
	Domains  []string      `json:"domains,omitempty"`
	Statuses []jobs.Status `json:"statuses,omitempty"`
	// Types are event types: org.openeuler.omni.job.created, org.openeuler.omni.job.changed.
	Types []string `json:"types,omitempty"`
}

// Matches reports whether an event of type typ about j is selected.
func (m Match) Matches(typ string, j *jobs.Job) bool {
	in := func(list []string, v string) bool { return len(list) == 0 || slices.Contains(list, v) }
	return in(m.Types, typ) && in(m.Services, j.Service) && in(m.Tasks, j.Task) && in(m.Domains, j.Domain) &&
		(len(m.Statuses) == 0 || slices.Contains(m.Statuses, j.Status))
}

// Subscriptions is one loaded subscriptions file. It never changes once loaded; a reload
// makes a new one.
type Subscriptions struct {
	list []*Subscription
}

// Len returns the number of subscriptions.
func (s *Subscriptions) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// Names returns the subscriptions' names in file order.
func (s *Subscriptions) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.list))
	for i, sub := range s.list {
		out[i] = sub.Name
	}
	return out
}

// Matching returns the subscriptions an event of type typ about j goes to, in file order.
func (s *Subscriptions) Matching(typ string, j *jobs.Job) []*Subscription {
	if s == nil {
		return nil
	}
	var out []*Subscription
	for _, sub := range s.list {
		if sub.Match.Matches(typ, j) {
			out = append(out, sub)
		}
	}
	return out
}

// ParseSubscriptions parses and checks a subscriptions file and resolves the secrets: a
// relative secretRef against dir, secretEnv through getenv. Every problem is reported, each
// naming the subscription and field.
func ParseSubscriptions(b []byte, dir string, getenv func(string) (string, bool)) (*Subscriptions, error) {
	var f File
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	out := &Subscriptions{}
	for i := range f.Subscriptions {
		sub := f.Subscriptions[i]
		where := fmt.Sprintf("subscriptions[%d]", i)
		if sub.Name != "" {
			where = fmt.Sprintf("subscription %q", sub.Name)
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s: %s", where, field, fmt.Sprintf(format, args...)))
		}
		switch {
		case sub.Name == "":
			bad("name", "required")
		case len(validation.IsDNS1123Label(sub.Name)) > 0:
			bad("name", "must be a DNS label (lowercase letters, digits, '-')")
		case seen[sub.Name]:
			bad("name", "used twice")
		}
		seen[sub.Name] = true
		u, err := url.Parse(sub.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url", "must be an absolute http or https URL")
		}
		sub.url = u
		n := 0
		for _, s := range []string{sub.Secret, sub.SecretRef, sub.SecretEnv} {
			if s != "" {
				n++
			}
		}
		switch {
		case n != 1:
			bad("secret", "give exactly one of secret, secretRef (a file, e.g. a mounted Secret) and secretEnv")
		case sub.Secret != "":
			sub.secret = []byte(sub.Secret)
		case sub.SecretRef != "":
			p := sub.SecretRef
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			sub.secretPath = p
			raw, err := readSecret(p)
			if err != nil {
				bad("secretRef", "%v", err)
				break
			}
			// A Secret created from a file often ends with a newline the author did not mean.
			sub.secret = []byte(strings.TrimRight(string(raw), "\r\n"))
			if len(sub.secret) == 0 {
				bad("secretRef", "%s is empty", p)
			}
		case sub.SecretEnv != "":
			v, ok := getenv(sub.SecretEnv)
			if !ok || v == "" {
				bad("secretEnv", "environment variable %s is not set", sub.SecretEnv)
			}
			sub.secret = []byte(v)
		}
		for _, st := range sub.Match.Statuses {
			if !st.Valid() {
				bad("match.statuses", "unknown status %q (want one of %v)", st, jobs.Statuses)
			}
		}
		for _, t := range sub.Match.Types {
			if t != events.TypeJobCreated && t != events.TypeJobChanged {
				bad("match.types", "unknown type %q (want %s or %s)", t, events.TypeJobCreated, events.TypeJobChanged)
			}
		}
		out.list = append(out.list, &sub)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// maxSecretBytes bounds a secretRef file.
const maxSecretBytes = 64 << 10

// readSecret reads the secret file p: a regular file (a Secret volume's key, through its
// links) of at most maxSecretBytes, so that a secretRef naming a device or a pipe (/dev/zero,
// /dev/stdin) fails instead of blocking the load or filling the memory.
func readSecret(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxSecretBytes {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", p, maxSecretBytes)
	}
	return os.ReadFile(p)
}

// Source holds the subscriptions in force and swaps in new ones when the file (or a secret file
// it names) changes. A file that does not exist means no subscriptions; a reload that fails
// keeps the previous subscriptions.
type Source struct {
	path   string
	getenv func(string) (string, bool)
	// Value holds the subscriptions in force (Current, Err, Reload).
	*filewatch.Value[Subscriptions]
}

// NewSource loads the subscriptions file at path. An invalid file is an error; a missing one
// is no subscriptions (it is picked up by Watch when it appears).
func NewSource(path string) (*Source, error) {
	s := &Source{path: path, getenv: os.LookupEnv}
	s.Value = filewatch.NewValue(s.load)
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) load() (*Subscriptions, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return &Subscriptions{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("subscriptions %s: %w", s.path, err)
	}
	subs, err := ParseSubscriptions(b, filepath.Dir(s.path), s.getenv)
	if err != nil {
		return nil, fmt.Errorf("subscriptions %s: %w", s.path, err)
	}
	return subs, nil
}

// watched returns the folders to watch and the names in them whose change means a reload: the
// subscriptions file and the secret files of the current subscriptions. Names starting with
// ".." are the kubelet's atomic-update entries of a mounted ConfigMap or Secret.
func (s *Source) watched() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	add := func(p string) {
		dir, name := filepath.Dir(p), filepath.Base(p)
		if out[dir] == nil {
			out[dir] = map[string]bool{}
		}
		out[dir][name] = true
	}
	add(s.path)
	if cur := s.Current(); cur != nil {
		for _, sub := range cur.list {
			if sub.secretPath != "" {
				add(sub.secretPath)
			}
		}
	}
	return out
}

// Watch reloads the subscriptions whenever the file or one of the secret files changes, until
// ctx is done; run it with go. It watches the folders holding them (so that a file that appears
// later, and the atomic symlink swap of a mounted ConfigMap or Secret, are seen) and reloads
// once when the watch is in place, so nothing changed since the first load is missed. It
// returns an error (also logged) only if the subscriptions file's folder cannot be watched.
func (s *Source) Watch(ctx context.Context) error {
	folders := func() ([]string, error) {
		watched := s.watched()
		main := filepath.Dir(s.path)
		out := []string{main}
		for dir := range watched {
			if dir != main {
				out = append(out, dir)
			}
		}
		return out, nil
	}
	err := filewatch.Loop(ctx, folders, func(path string) bool { return relevant(s.watched(), path) },
		func(why string) { s.reloadAndLog(ctx, why) })
	if err != nil {
		logging.FromContext(ctx).Errorw("Cannot watch the subscriptions file; it is not reloaded", zap.String("file", s.path), zap.Error(err))
		return fmt.Errorf("watch subscriptions: %w", err)
	}
	return nil
}

// relevant reports whether a change of path (in a watched folder) may change the subscriptions:
// it is the file, a secret file, or an atomic-update entry of a mounted ConfigMap or Secret. Other
// files of the folder (the all-in-one's data folder holds the SQLite database) are ignored.
func relevant(names map[string]map[string]bool, path string) bool {
	base := filepath.Base(path)
	return names[filepath.Dir(path)][base] || strings.HasPrefix(base, "..")
}

func (s *Source) reloadAndLog(ctx context.Context, why string) {
	logger := logging.FromContext(ctx)
	if err := s.Reload(); err != nil {
		logger.Errorw("Reloading the subscriptions failed; keeping the previous ones", zap.String("trigger", why), zap.Error(err))
		return
	}
	logger.Infow("Loaded the subscriptions", zap.String("trigger", why), zap.String("file", s.path),
		zap.Strings("subscriptions", s.Current().Names()))
}
