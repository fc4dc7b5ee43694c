package router

import (
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/google/go-cmp/cmp"
	eventingduckv1 "knative.dev/eventing/pkg/apis/duck/v1"
	"knative.dev/pkg/ptr"
)

func TestPolicy(t *testing.T) {
	exp, lin := eventingduckv1.BackoffPolicyExponential, eventingduckv1.BackoffPolicyLinear
	tests := map[string]struct {
		spec      *eventingduckv1.DeliverySpec
		scale     float64
		wantTries int
		want      []time.Duration // backoff before retry 1, 2, 3
	}{
		"no spec: no retries": {
			spec: nil, scale: 1, wantTries: 0, want: []time.Duration{0, 0, 0},
		},
		"exponential PT0.2S": {
			spec:  &eventingduckv1.DeliverySpec{Retry: ptr.Int32(5), BackoffPolicy: &exp, BackoffDelay: ptr.String("PT0.2S")},
			scale: 1, wantTries: 5,
			want: []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond},
		},
		"linear PT1S starts at zero, as Knative's": {
			spec:  &eventingduckv1.DeliverySpec{Retry: ptr.Int32(3), BackoffPolicy: &lin, BackoffDelay: ptr.String("PT1S")},
			scale: 1, wantTries: 3,
			want: []time.Duration{0, time.Second, 2 * time.Second},
		},
		"delay without policy: immediate": {
			spec:  &eventingduckv1.DeliverySpec{Retry: ptr.Int32(2), BackoffDelay: ptr.String("PT1S")},
			scale: 1, wantTries: 2, want: []time.Duration{0, 0, 0},
		},
		"scaled for tests": {
			spec:  &eventingduckv1.DeliverySpec{Retry: ptr.Int32(5), BackoffPolicy: &exp, BackoffDelay: ptr.String("PT1S")},
			scale: 0.001, wantTries: 5,
			want: []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := &Router{opts: options{backoffScale: tc.scale, requestTimeout: time.Minute}}
			p, err := r.policy(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if p.retries != tc.wantTries {
				t.Errorf("retries = %d, want %d", p.retries, tc.wantTries)
			}
			var got []time.Duration
			for n := range 3 {
				got = append(got, p.backoff(n))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("backoff (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryable(t *testing.T) {
	want := map[int]bool{0: true, 200: false, 300: false, 400: false, 401: false, 403: false, 404: true,
		408: true, 409: true, 410: false, 413: false, 422: false, 429: true, 500: true, 502: true, 503: true}
	for code, w := range want {
		if got := retryable(code); got != w {
			t.Errorf("retryable(%d) = %v, want %v", code, got, w)
		}
	}
}

func TestNextTTL(t *testing.T) {
	tests := map[string]struct {
		ttl  any // nil: absent
		want int32
	}{
		"absent: the maximum":   {nil, 255},
		"decremented":           {int32(10), 9},
		"string from a header":  {"10", 9},
		"never below zero":      {int32(0), 0},
		"garbage: the maximum":  {"ten", 255},
		"one runs out (reject)": {int32(1), 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ev := cloudevents.NewEvent()
			if tc.ttl != nil {
				ev.SetExtension(ttlAttribute, tc.ttl)
			}
			if got := nextTTL(ev); got != tc.want {
				t.Errorf("nextTTL = %d, want %d", got, tc.want)
			}
		})
	}
}
