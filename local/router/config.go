package router

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"knative.dev/eventing/pkg/apis/eventing"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// DefaultNamespace is the namespace of objects whose manifest names none, as with kubectl apply
// in a context without a namespace.
const DefaultNamespace = "default"

var (
	brokerGVK     = eventingv1.SchemeGroupVersion.WithKind("Broker")
	triggerGVK    = eventingv1.SchemeGroupVersion.WithKind("Trigger")
	pingSourceGVK = sourcesv1.SchemeGroupVersion.WithKind("PingSource")
)

// Config is the Knative eventing objects of a manifest folder, defaulted and validated the way
// the Knative admission webhooks would on kubectl apply.
type Config struct {
	Brokers     []*eventingv1.Broker
	Triggers    []*eventingv1.Trigger
	PingSources []*sourcesv1.PingSource
}

// LoadDir is Load(os.DirFS(dir)).
func LoadDir(dir string) (*Config, error) {
	return Load(os.DirFS(dir))
}

// Load reads every *.yaml and *.yml file at the top of fsys (not its sub-folders, like
// `ko resolve -f config/`), each possibly holding several documents, and keeps the Brokers,
// Triggers and PingSources. Other kinds, and documents that are not Kubernetes objects, are
// ignored. An object that the Knative webhook would reject is an error naming file and object.
func Load(fsys fs.FS) (*Config, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read manifests: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		ext := path.Ext(e.Name())
		if e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0 {
			if ext == ".yaml" || ext == ".yml" {
				names = append(names, e.Name())
			}
		}
	}
	sort.Strings(names)

	cfg := &Config{}
	var errs []error
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read manifest %s: %w", name, err)
		}
		if err := cfg.add(name, b); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cfg.checkUnique(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// add decodes the documents of one file.
func (c *Config) add(file string, b []byte) error {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var errs []error
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", file, i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		if err := c.addDoc(doc); err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", file, i, err))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) addDoc(doc []byte) error {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		// Either not YAML at all, or YAML that is not an object (a list, a scalar): neither is
		// a Kubernetes manifest, so not ours to judge — except for syntax errors.
		var probe any
		if perr := yaml.Unmarshal(doc, &probe); perr != nil {
			return perr
		}
		return nil
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return nil
	}
	ctx := context.Background()
	switch gv.WithKind(head.Kind) {
	case brokerGVK:
		b := &eventingv1.Broker{}
		if err := decodeStrict(doc, b); err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		defaultNamespace(&b.ObjectMeta.Namespace)
		if b.Annotations[eventingv1.BrokerClassAnnotationKey] == "" {
			// What config-br-defaults of a Knative release install gives every Broker.
			metav1.SetMetaDataAnnotation(&b.ObjectMeta, eventingv1.BrokerClassAnnotationKey, eventing.MTChannelBrokerClassValue)
		}
		b.SetDefaults(ctx)
		if err := validate(ctx, b); err != nil {
			return fmt.Errorf("broker %s/%s: %w", b.Namespace, b.Name, err)
		}
		c.Brokers = append(c.Brokers, b)
	case triggerGVK:
		t := &eventingv1.Trigger{}
		if err := decodeStrict(doc, t); err != nil {
			return fmt.Errorf("trigger: %w", err)
		}
		defaultNamespace(&t.ObjectMeta.Namespace)
		t.SetDefaults(ctx)
		if err := validate(ctx, t); err != nil {
			return fmt.Errorf("trigger %s/%s: %w", t.Namespace, t.Name, err)
		}
		c.Triggers = append(c.Triggers, t)
	case pingSourceGVK:
		p := &sourcesv1.PingSource{}
		if err := decodeStrict(doc, p); err != nil {
			return fmt.Errorf("pingsource: %w", err)
		}
		defaultNamespace(&p.ObjectMeta.Namespace)
		p.SetDefaults(ctx)
		if err := validate(ctx, p); err != nil {
			return fmt.Errorf("pingsource %s/%s: %w", p.Namespace, p.Name, err)
		}
		c.PingSources = append(c.PingSources, p)
	}
	return nil
}

// checkUnique rejects two objects of one kind with the same namespace and name: kubectl apply
// would keep only the last, which is never what the author meant.
func (c *Config) checkUnique() error {
	seen := map[string]bool{}
	var errs []error
	check := func(kind, ns, name string) {
		k := kind + " " + ns + "/" + name
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s defined twice", strings.ToLower(k)))
		}
		seen[k] = true
	}
	for _, b := range c.Brokers {
		check("Broker", b.Namespace, b.Name)
	}
	for _, t := range c.Triggers {
		check("Trigger", t.Namespace, t.Name)
	}
	for _, p := range c.PingSources {
		check("PingSource", p.Namespace, p.Name)
	}
	return errors.Join(errs...)
}

func decodeStrict(doc []byte, into any) error {
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		return err
	}
	return nil
}

func defaultNamespace(ns *string) {
	if *ns == "" {
		*ns = DefaultNamespace
	}
}

// validate runs the object's Knative validation as on create, and turns its FieldError into an
// error (a nil *apis.FieldError must not become a non-nil error interface).
func validate(ctx context.Context, v apis.Validatable) error {
	if fe := v.Validate(apis.WithinCreate(ctx)); fe != nil {
		return fe
	}
	return nil
}

// Local is what the local hosts (the all-in-one, the fleet) run: a Router of the Brokers,
// Triggers and PingSources of fsys (config.FS) delivering to in-process handlers by Service name
// (Handlers), with logger and, when positive, a backoff scale and a ping interval.
func Local(fsys fs.FS, handlers map[string]http.Handler, logger *zap.SugaredLogger, backoffScale float64, pingInterval time.Duration) (*Router, error) {
	cfg, err := Load(fsys)
	if err != nil {
		return nil, fmt.Errorf("load config/: %w", err)
	}
	opts := []Option{WithLogger(logger.Named("router"))}
	if backoffScale > 0 {
		opts = append(opts, WithBackoffScale(backoffScale))
	}
	if pingInterval > 0 {
		opts = append(opts, WithPingInterval(pingInterval))
	}
	r, err := New(cfg, Handlers(handlers), opts...)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return r, nil
}
