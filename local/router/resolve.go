package router

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// Ref names an addressable object, as the ref of a Knative Destination does.
type Ref struct {
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
}

func (r Ref) String() string {
	return fmt.Sprintf("%s %s %s/%s", r.APIVersion, r.Kind, r.Namespace, r.Name)
}

// Target is where a Ref's events go: an in-process handler, or the base URL of a server.
// Exactly one of the fields is set.
type Target struct {
	// Handler serves the events in-process. The router addresses it as
	// http://<name>.<namespace>.svc.cluster.local, the address of a Knative Service, so that
	// relative destination URIs and the knativeerrordest extension look as in the cluster.
	Handler http.Handler
	// URL is an absolute http(s) URL; a destination's relative uri is resolved against it.
	URL *url.URL
}

// Resolver returns the Target of a Ref; the router calls it once per distinct Ref, in New.
type Resolver func(Ref) (Target, error)

// ErrUnresolved is returned (wrapped) by Handlers for a Ref it has no handler for.
var ErrUnresolved = errors.New("no target for ref")

// Handlers returns a Resolver that maps Services (Knative serving.knative.dev/v1 or core v1) to
// in-process handlers, keyed "namespace/name" or, for any namespace, "name".
func Handlers(m map[string]http.Handler) Resolver {
	return func(ref Ref) (Target, error) {
		if ref.Kind != "Service" || (ref.APIVersion != "serving.knative.dev/v1" && ref.APIVersion != "v1") {
			return Target{}, fmt.Errorf("%w %s: only Services are served in-process", ErrUnresolved, ref)
		}
		if h, ok := m[ref.Namespace+"/"+ref.Name]; ok {
			return Target{Handler: h}, nil
		}
		if h, ok := m[ref.Name]; ok {
			return Target{Handler: h}, nil
		}
		return Target{}, fmt.Errorf("%w %s", ErrUnresolved, ref)
	}
}

// ingressHost is the host of the Knative broker ingress; the router serves it in-process when a
// destination refers to one of its Brokers.
const ingressHost = "broker-ingress.knative-eventing.svc.cluster.local"

// brokerURL is the ingress URL of a Broker, as Knative publishes it in the Broker's status.
func brokerURL(namespace, name string) *url.URL {
	return &url.URL{Scheme: "http", Host: ingressHost, Path: "/" + namespace + "/" + name}
}

// destinations resolves Knative Destinations to URLs, and collects the in-process handlers the
// transport serves.
type destinations struct {
	resolve  Resolver
	brokers  map[brokerKey]bool
	self     http.Handler
	refs     map[Ref]*url.URL
	handlers map[string]http.Handler // by host
	owners   map[string]Ref          // by host, to detect two refs claiming one host
}

// url resolves dest as Knative's URIResolver does: a ref's address, with a relative uri resolved
// against it (an absolute uri next to a ref is an error), or else an absolute uri. A ref without
// namespace is in the namespace of the object holding the destination.
func (d *destinations) url(dest duckv1.Destination, namespace string) (*url.URL, error) {
	if dest.Ref == nil {
		if dest.URI == nil {
			return nil, errors.New("destination has neither ref nor uri")
		}
		u := dest.URI.URL()
		if !u.IsAbs() || u.Host == "" {
			return nil, fmt.Errorf("uri %q is not absolute (both scheme and host should be non-empty)", u)
		}
		return u, nil
	}
	ref := Ref{APIVersion: dest.Ref.APIVersion, Kind: dest.Ref.Kind, Namespace: dest.Ref.Namespace, Name: dest.Ref.Name}
	if ref.Namespace == "" {
		ref.Namespace = namespace
	}
	base, err := d.ref(ref)
	if err != nil {
		return nil, err
	}
	if dest.URI == nil {
		return base, nil
	}
	if dest.URI.URL().IsAbs() {
		return nil, errors.New("absolute URI is not allowed when Ref or [apiVersion, kind, name] exists")
	}
	return base.ResolveReference(dest.URI.URL()), nil
}

func (d *destinations) ref(ref Ref) (*url.URL, error) {
	if u, ok := d.refs[ref]; ok {
		return u, nil
	}
	var u *url.URL
	if ref.Kind == "Broker" && ref.APIVersion == eventingv1.SchemeGroupVersion.String() {
		if !d.brokers[brokerKey{ref.Namespace, ref.Name}] {
			return nil, fmt.Errorf("resolve %s: no such broker in the configuration", ref)
		}
		u = brokerURL(ref.Namespace, ref.Name)
		d.handlers[ingressHost] = d.self
	} else {
		t, err := d.resolve(ref)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, err)
		}
		switch {
		case t.Handler != nil && t.URL == nil:
			host := ref.Name + "." + ref.Namespace + ".svc.cluster.local"
			if other, taken := d.owners[host]; taken {
				return nil, fmt.Errorf("resolve %s: in-process host %s already serves %s", ref, host, other)
			}
			d.owners[host] = ref
			d.handlers[host] = t.Handler
			u = &url.URL{Scheme: "http", Host: host}
		case t.URL != nil && t.Handler == nil:
			if !t.URL.IsAbs() || t.URL.Host == "" {
				return nil, fmt.Errorf("resolve %s: target URL %q is not absolute", ref, t.URL)
			}
			u = t.URL
		default:
			return nil, fmt.Errorf("resolve %s: target must have exactly one of Handler and URL", ref)
		}
	}
	d.refs[ref] = u
	return u, nil
}
