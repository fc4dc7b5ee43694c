package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifest is one document of a manifest file.
type manifest struct {
	File       string // relative to the repository root
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Raw []byte // the document as YAML
}

// decode unmarshals the document into v (strictly: an unknown field is an error).
func (m manifest) decode(t testing.TB, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(m.Raw, v); err != nil {
		t.Fatalf("%s: %s %s: %v", m.File, m.Kind, m.Metadata.Name, err)
	}
}

func (m manifest) String() string {
	return m.File + ": " + m.Kind + " " + m.Metadata.Namespace + "/" + m.Metadata.Name
}

// loadManifests reads every document of the *.yaml and *.yml files at the top of dir (relative
// to the repository root), as `ko apply -f dir` and `kubectl apply -f dir` do.
func loadManifests(t testing.TB, dir string) []manifest {
	t.Helper()
	root := repoRoot(t)
	files, err := filepath.Glob(filepath.Join(root, dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var out []manifest
	for _, f := range files {
		if ext := filepath.Ext(f); ext != ".yaml" && ext != ".yml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			m := manifest{File: rel, Raw: doc}
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			if m.Kind == "" {
				t.Fatalf("%s: a document without kind", rel)
			}
			out = append(out, m)
		}
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

// byKind returns the manifests of one kind.
func byKind(ms []manifest, kind string) []manifest {
	var out []manifest
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}

// find returns the manifest of kind, namespace and name, or nil.
func find(ms []manifest, kind, namespace, name string) *manifest {
	for i, m := range ms {
		if m.Kind == kind && m.Metadata.Namespace == namespace && m.Metadata.Name == name {
			return &ms[i]
		}
	}
	return nil
}
