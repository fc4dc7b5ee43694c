package queue_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/omnibuildplatform/omni-orchestrator/shared/queue"
)

// FuzzParse feeds policy files to Parse: a file is refused with an error, or it gives a policy
// that is consistent — every service's default class is a class it may ask for — and that
// reads back the same from its own encoding.
func FuzzParse(f *testing.F) {
	docs, err := os.ReadFile(filepath.Join("..", "..", "config", "213-queue-policy.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	var cm struct{ Data map[string]string }
	if err := yaml.Unmarshal(docs, &cm); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(cm.Data["policy.yaml"]))
	for _, seed := range []string{
		"",
		"services:\n  a: {weight: 1, maxClass: urgent}\n  b: {weight: 2, maxClass: urgent}\naging: 10m\n",
		"classes: [urgent, normal, background]\ndefaultClass: normal\naging: 10m\nservices:\n  rpm-builder: {weight: 2, defaultClass: normal, maxClass: urgent, quota: {aarch64: 40}}\n  \"*\": {weight: 1, maxClass: normal}\njobTypes:\n  buildimagefromiso: {slots: 2}\n  buildimagefromrelease:\n    slots: 2\n    concurrencyKey: \"{{.domain}}/{{.parameters.release}}/{{.arch}}\"\n    concurrencyLimit: 1\ninstances:\n  arm-build-1: {capacity: 24}\n",
		"classes: [a, a]\n",
		"defaultClass: nope\n",
		"aging: -1s\n",
		"aging: forever\n",
		"services: {a: {weight: -1}}\n",
		"services: {a: {quota: {sparc: 1}}}\n",
		"jobTypes: {t: {concurrencyKey: '{{'}}\n",
		"unknown: 1\n",
		"services: {a: {defaultClass: urgent, maxClass: background}}\n",
		"services: {\"*\": {maxClass: background}}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := queue.Parse(b)
		if err != nil {
			if p != nil {
				t.Fatalf("error %v with a policy", err)
			}
			return
		}
		if p.Rank(p.DefaultClass) < 0 {
			t.Errorf("default class %q is not a class of %v", p.DefaultClass, p.Classes)
		}
		names := []string{"a service the policy does not name"}
		for name := range p.Services {
			names = append(names, name)
		}
		for _, name := range names {
			c, err := p.Class(name, "")
			if err != nil || p.Rank(c) < 0 {
				t.Errorf("service %q: default class %q, %v", name, c, err)
				continue
			}
			if _, err := p.Class(name, c); err != nil {
				t.Errorf("service %q may not ask for its own default class %q: %v", name, c, err)
			}
		}
		enc, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("encode %+v: %v", p, err)
		}
		again, err := queue.Parse(enc)
		if err != nil {
			t.Fatalf("the encoding of a policy does not parse: %v\n%s", err, enc)
		}
		if d := cmp.Diff(p, again, cmpopts.IgnoreUnexported(queue.Policy{}), cmpopts.EquateEmpty()); d != "" {
			t.Errorf("policy read back from its encoding differs (-first +again):\n%s", d)
		}
	})
}
