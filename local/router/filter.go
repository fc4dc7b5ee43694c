package router

import (
	"context"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/eventing/pkg/eventfilter"
	"knative.dev/eventing/pkg/eventfilter/attributes"
	"knative.dev/eventing/pkg/eventfilter/subscriptionsapi"
)

// triggerFilter builds the filter of a Trigger as the Broker filter does: spec.filters if any,
// else the legacy spec.filter.attributes, else everything passes. An event is delivered unless
// the result is FailFilter.
//
// The leaves (exact, prefix, suffix, cesql) and not are Knative's own. all and any are
// re-implemented here with Knative's results (all: the first failure, else the last result;
// any: the first pass, else the last result) because Knative's versions reorder their
// children on a background goroutine whose Cleanup races with that goroutine.
func triggerFilter(t *eventingv1.Trigger) (eventfilter.Filter, error) {
	switch {
	case len(t.Spec.Filters) > 0:
		fs, err := materializeList(t.Spec.Filters)
		if err != nil {
			return nil, err
		}
		return allFilter(fs), nil
	case t.Spec.Filter != nil:
		return attributes.NewAttributesFilter(t.Spec.Filter.Attributes), nil
	}
	return subscriptionsapi.NewNoFilter(), nil
}

// materialize mirrors subscriptionsapi.MaterializeSubscriptionsAPIFilter. It returns nil for
// an empty filter, which the caller skips, as Knative does.
func materialize(f eventingv1.SubscriptionsAPIFilter) (eventfilter.Filter, error) {
	switch {
	case len(f.Exact) > 0:
		return subscriptionsapi.NewExactFilter(f.Exact)
	case len(f.Prefix) > 0:
		return subscriptionsapi.NewPrefixFilter(f.Prefix)
	case len(f.Suffix) > 0:
		return subscriptionsapi.NewSuffixFilter(f.Suffix)
	case len(f.All) > 0:
		fs, err := materializeList(f.All)
		return allFilter(fs), err
	case len(f.Any) > 0:
		fs, err := materializeList(f.Any)
		return anyFilter(fs), err
	case f.Not != nil:
		inner, err := materialize(*f.Not)
		if err != nil || inner == nil {
			return nil, err
		}
		return subscriptionsapi.NewNotFilter(inner), nil
	case f.CESQL != "":
		return subscriptionsapi.NewCESQLFilter(f.CESQL)
	}
	return nil, nil
}

func materializeList(list []eventingv1.SubscriptionsAPIFilter) ([]eventfilter.Filter, error) {
	fs := make([]eventfilter.Filter, 0, len(list))
	for _, f := range list {
		m, err := materialize(f)
		if err != nil {
			return nil, err
		}
		if m != nil {
			fs = append(fs, m)
		}
	}
	return fs, nil
}

type allFilter []eventfilter.Filter

func (a allFilter) Filter(ctx context.Context, ev cloudevents.Event) eventfilter.FilterResult {
	res := eventfilter.NoFilter
	for _, f := range a {
		if res = f.Filter(ctx, ev); res == eventfilter.FailFilter {
			return res
		}
	}
	return res
}

func (a allFilter) Cleanup() {
	for _, f := range a {
		f.Cleanup()
	}
}

type anyFilter []eventfilter.Filter

func (a anyFilter) Filter(ctx context.Context, ev cloudevents.Event) eventfilter.FilterResult {
	res := eventfilter.NoFilter
	for _, f := range a {
		if res = f.Filter(ctx, ev); res == eventfilter.PassFilter {
			return res
		}
	}
	return res
}

func (a anyFilter) Cleanup() {
	for _, f := range a {
		f.Cleanup()
	}
}
