// Package queue is the policy of the build queue (docs/queue.md): priority classes, fair share
// between services by weight, per-service quotas per arch, slots per job type, concurrency
// keys and the aging of waiting jobs; the order in which waiting jobs are dispatched (Order, a
// pure function); and the policy file, reloaded when it changes.
package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/filewatch"
	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

// The built-in classes, highest first, used when the policy names none.
var DefaultClasses = []string{"urgent", "normal", "background"}

// Policy is the queue policy file (docs/queue.md).
type Policy struct {
	// Classes are the priority classes, highest first. Default urgent, normal, background.
	Classes []string `json:"classes,omitempty"`
	// DefaultClass is the class of a job whose service sets none. Default "normal" (or the
	// middle class).
	DefaultClass string `json:"defaultClass,omitempty"`
	// Aging is how long a job waits before it counts one class higher (again after each further
	// Aging), so that no class starves under a stream of higher ones. 0 = the default, 10m;
	// negative = never.
	Aging Duration `json:"aging,omitempty"`
	// Services are the per-service settings; "*" applies to services not named.
	Services map[string]Service `json:"services,omitempty"`
	// JobTypes are the per-job-type settings (by task name).
	JobTypes map[string]JobType `json:"jobTypes,omitempty"`
	// Instances override the capacity (in slots) of engine instances by name.
	Instances map[string]Instance `json:"instances,omitempty"`

	keys map[string]*template.Template
}

// Service is one service's share of the queue.
type Service struct {
	// Weight is the service's share of slots against the others (default 1).
	Weight int `json:"weight,omitempty"`
	// DefaultClass is the class of its jobs that name none (default: the policy's).
	DefaultClass string `json:"defaultClass,omitempty"`
	// MaxClass is the highest class its jobs may ask for (default: its default class).
	MaxClass string `json:"maxClass,omitempty"`
	// Quota is, per arch, the most slots its running jobs may hold (absent or 0 = no limit).
	Quota map[string]int `json:"quota,omitempty"`
}

// JobType is what the queue knows of a job type.
type JobType struct {
	// Slots is how many slots of an instance a job of this type takes (default 1).
	Slots int `json:"slots,omitempty"`
	// ConcurrencyKey is a Go template over .task, .arch, .domain, .service and .parameters; jobs
	// with the same rendered key run at most ConcurrencyLimit at a time.
	ConcurrencyKey string `json:"concurrencyKey,omitempty"`
	// ConcurrencyLimit is the most jobs of one key running at once (default 1).
	ConcurrencyLimit int `json:"concurrencyLimit,omitempty"`
	// MaxAttempts is how many attempts a job of this type gets in all when the infrastructure
	// loses it (objects refused for a transient reason, pod evicted or node lost, Kubernetes Job
	// gone): default jobs.DefaultMaxAttempts (3); 1 = never retried. A build failure is never
	// retried.
	MaxAttempts int `json:"maxAttempts,omitempty"`
}

// Instance overrides an engine instance's settings.
type Instance struct {
	// Capacity in slots (0 = unlimited); replaces the cluster config's capacity.
	Capacity *int `json:"capacity,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("10m").
type Duration time.Duration

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// Parse reads and checks a policy file's content. An empty content is the default policy.
func Parse(b []byte) (*Policy, error) {
	p := &Policy{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, fmt.Errorf("parse queue policy: %w", err)
	}
	if err := p.complete(); err != nil {
		return nil, fmt.Errorf("queue policy: %w", err)
	}
	return p, nil
}

// Default returns the default policy: the built-in classes, every service weight 1 with class
// normal at most, one slot per job, no quotas and no keys.
func Default() *Policy {
	p, err := Parse(nil)
	if err != nil {
		panic(err)
	}
	return p
}

func (p *Policy) complete() error {
	if len(p.Classes) == 0 {
		p.Classes = DefaultClasses
	}
	seen := map[string]bool{}
	for _, c := range p.Classes {
		if c == "" || seen[c] {
			return fmt.Errorf("class %q empty or listed twice", c)
		}
		seen[c] = true
	}
	if p.DefaultClass == "" {
		p.DefaultClass = p.Classes[len(p.Classes)/2]
		if seen["normal"] {
			p.DefaultClass = "normal"
		}
	}
	if !seen[p.DefaultClass] {
		return fmt.Errorf("defaultClass %q is not a class", p.DefaultClass)
	}
	if p.Aging == 0 {
		p.Aging = Duration(10 * time.Minute)
	}
	for name, s := range p.Services {
		if s.Weight < 0 {
			return fmt.Errorf("service %s: negative weight", name)
		}
		for _, c := range []string{s.DefaultClass, s.MaxClass} {
			if c != "" && !seen[c] {
				return fmt.Errorf("service %s: unknown class %q", name, c)
			}
		}
		for arch, q := range s.Quota {
			if jobs.KubeArch(arch) == "" || q < 0 {
				return fmt.Errorf("service %s: quota for %q: unknown arch or negative", name, arch)
			}
		}
		// A job that names no class gets the default class: it must be one the service may
		// ask for, or such jobs would run above the service's highest class.
		if eff := p.service(name); p.Rank(eff.DefaultClass) < p.Rank(eff.MaxClass) {
			return fmt.Errorf("service %s: default class %s is above its maxClass %s", name, eff.DefaultClass, eff.MaxClass)
		}
	}
	p.keys = map[string]*template.Template{}
	for name, t := range p.JobTypes {
		if t.Slots < 0 || t.ConcurrencyLimit < 0 || t.MaxAttempts < 0 {
			return fmt.Errorf("job type %s: negative slots, concurrencyLimit or maxAttempts", name)
		}
		if t.ConcurrencyKey != "" {
			tpl, err := template.New(name).Option("missingkey=zero").Parse(t.ConcurrencyKey)
			if err != nil {
				return fmt.Errorf("job type %s: concurrencyKey: %w", name, err)
			}
			p.keys[name] = tpl
		}
	}
	return nil
}

func (p *Policy) service(name string) Service {
	s, ok := p.Services[name]
	if !ok {
		s = p.Services["*"]
	}
	if s.Weight <= 0 {
		s.Weight = 1
	}
	if s.DefaultClass == "" {
		s.DefaultClass = p.DefaultClass
	}
	if s.MaxClass == "" {
		s.MaxClass = s.DefaultClass
	}
	return s
}

// Weight is the service's weight (at least 1).
func (p *Policy) Weight(service string) int { return p.service(service).Weight }

// Quota is the most slots the service's running jobs may hold on arch (0 = no limit).
func (p *Policy) Quota(service, arch string) int { return p.service(service).Quota[arch] }

// Rank is the position of class among the classes (0 = highest), -1 if unknown.
func (p *Policy) Rank(class string) int {
	for i, c := range p.Classes {
		if c == class {
			return i
		}
	}
	return -1
}

// Class returns the class a job of service asking for class gets: the service's default when
// asked is empty, an *jobs.InvalidError for an unknown class and jobs.ErrForbidden above the
// service's highest class.
func (p *Policy) Class(service, asked string) (string, error) {
	s := p.service(service)
	if asked == "" {
		return s.DefaultClass, nil
	}
	r := p.Rank(asked)
	if r < 0 {
		return "", jobs.Invalid("class", "unknown class %q (want one of %s)", asked, strings.Join(p.Classes, ", "))
	}
	if r < p.Rank(s.MaxClass) {
		return "", fmt.Errorf("class %s for service %s (highest allowed: %s): %w", asked, service, s.MaxClass, jobs.ErrForbidden)
	}
	return asked, nil
}

// Slots is how many slots a job of task takes (at least 1).
func (p *Policy) Slots(task string) int { return max(p.JobTypes[task].Slots, 1) }

// MaxAttempts returns how many attempts a job of task gets in all (JobType.MaxAttempts).
func (p *Policy) MaxAttempts(task string) int {
	if n := p.JobTypes[task].MaxAttempts; n > 0 {
		return n
	}
	return jobs.DefaultMaxAttempts
}

// ConcurrencyKey renders the concurrency key of a job of task and its limit ("" and 0 when the
// job type has none).
func (p *Policy) ConcurrencyKey(task, arch, domain, service string, params map[string]any) (string, int, error) {
	tpl := p.keys[task]
	if tpl == nil {
		return "", 0, nil
	}
	var b bytes.Buffer
	if err := tpl.Execute(&b, map[string]any{"task": task, "arch": arch, "domain": domain, "service": service, "parameters": params}); err != nil {
		return "", 0, fmt.Errorf("render concurrency key of %s: %w", task, err)
	}
	return task + "/" + b.String(), max(p.JobTypes[task].ConcurrencyLimit, 1), nil
}

// KeyLimit is the limit of a rendered concurrency key (1 when its job type is gone).
func (p *Policy) KeyLimit(key string) int {
	task, _, _ := strings.Cut(key, "/")
	return max(p.JobTypes[task].ConcurrencyLimit, 1)
}

// Capacity returns the capacity in slots of instance name: the policy's override if any, else
// configured (0 = unlimited).
func (p *Policy) Capacity(name string, configured int) int {
	if in, ok := p.Instances[name]; ok && in.Capacity != nil {
		return *in.Capacity
	}
	return configured
}

// PolicyEnv names the queue policy file.
type PolicyEnv struct {
	// PolicyFile is the queue policy (a mounted ConfigMap key); reloaded when it changes.
	// Empty: the default policy.
	PolicyFile string `envconfig:"OMNI_QUEUE_POLICY"`
}

// Source holds the current policy, reloaded from its file.
type Source struct {
	*filewatch.Value[Policy]
	path string
}

// Open loads the policy file (the default policy when s names none).
func (s PolicyEnv) Open() (*Source, error) {
	src := &Source{path: s.PolicyFile}
	src.Value = filewatch.NewValue(func() (*Policy, error) {
		if src.path == "" {
			return Default(), nil
		}
		b, err := os.ReadFile(src.path)
		if errors.Is(err, os.ErrNotExist) {
			return Default(), nil
		}
		if err != nil {
			return nil, fmt.Errorf("read queue policy: %w", err)
		}
		return Parse(b)
	})
	if err := src.Reload(); err != nil {
		return nil, err
	}
	return src, nil
}

// Watch reloads the policy whenever its folder changes, until ctx is done; a broken edit keeps
// the previous policy. Run it with go.
func (s *Source) Watch(ctx context.Context) error {
	if s.path == "" {
		return nil
	}
	logger := logging.FromContext(ctx)
	dir := filepath.Dir(s.path)
	return filewatch.Loop(ctx, func() ([]string, error) { return []string{dir}, nil }, nil, func(why string) {
		if err := s.Reload(); err != nil {
			logger.Errorw("Reloading the queue policy failed; keeping the previous one", zap.String("trigger", why), zap.Error(err))
		}
	})
}
