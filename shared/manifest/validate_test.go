package manifest

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/omnibuildplatform/omni-orchestrator/shared/jobs"
)

const sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func isoParams() map[string]any {
	return map[string]any{"isoUrl": "https://example.org/a.iso", "isoSha256": sha, "kickstart": "reboot\n"}
}

func releaseParams() map[string]any {
	return map[string]any{"version": "24.03-LTS", "packages": []any{"bash", "kernel"}, "repos": []any{"https://example.org/os/"}}
}

func TestValidateErrorsNameTheField(t *testing.T) {
	c := builtin(t)
	with := func(base map[string]any, k string, v any) map[string]any {
		base[k] = v
		return base
	}
	without := func(base map[string]any, k string) map[string]any {
		delete(base, k)
		return base
	}
	tests := map[string]struct {
		task, arch string
		params     map[string]any
		field      string
	}{
		"unknown task":             {"buildnothing", "x86_64", nil, "task"},
		"empty task":               {"", "x86_64", nil, "task"},
		"unknown arch":             {"buildrpm", "riscv64", map[string]any{"srpmUrl": "https://e.org/a.src.rpm"}, "arch"},
		"empty arch":               {"buildrpm", "", map[string]any{"srpmUrl": "https://e.org/a.src.rpm"}, "arch"},
		"kube arch name":           {"buildrpm", "amd64", map[string]any{"srpmUrl": "https://e.org/a.src.rpm"}, "arch"},
		"missing required":         {"buildimagefromiso", "x86_64", without(isoParams(), "isoSha256"), "parameters.isoSha256"},
		"no parameters at all":     {"buildimagefromiso", "aarch64", nil, "parameters.isoUrl"},
		"unknown parameter":        {"buildimagefromiso", "x86_64", with(isoParams(), "isoURL", "x"), "parameters.isoURL"},
		"bad checksum":             {"buildimagefromiso", "x86_64", with(isoParams(), "isoSha256", "abc"), "parameters.isoSha256"},
		"checksum with newline":    {"buildimagefromiso", "x86_64", with(isoParams(), "isoSha256", sha+"\n"), "parameters.isoSha256"},
		"url not http":             {"buildimagefromiso", "x86_64", with(isoParams(), "isoUrl", "file:///etc/passwd"), "parameters.isoUrl"},
		"url with space":           {"buildimagefromiso", "x86_64", with(isoParams(), "isoUrl", "https://e.org/a b"), "parameters.isoUrl"},
		"empty kickstart":          {"buildimagefromiso", "x86_64", with(isoParams(), "kickstart", ""), "parameters.kickstart"},
		"kickstart not a string":   {"buildimagefromiso", "x86_64", with(isoParams(), "kickstart", 42), "parameters.kickstart"},
		"bad format":               {"buildimagefromrelease", "x86_64", with(releaseParams(), "format", "qcow2"), "parameters.format"},
		"packages not a list":      {"buildimagefromrelease", "x86_64", with(releaseParams(), "packages", "bash kernel"), "parameters.packages"},
		"empty packages":           {"buildimagefromrelease", "x86_64", with(releaseParams(), "packages", []any{}), "parameters.packages"},
		"package is an option":     {"buildimagefromrelease", "x86_64", with(releaseParams(), "packages", []any{"bash", "--installroot=/"}), "parameters.packages.1"},
		"duplicate packages":       {"buildimagefromrelease", "x86_64", with(releaseParams(), "packages", []any{"bash", "bash"}), "parameters.packages"},
		"repo url bad":             {"buildimagefromrelease", "x86_64", with(releaseParams(), "repos", []any{"https://ok/", "ftp://x/"}), "parameters.repos.1"},
		"version with shell":       {"buildimagefromrelease", "x86_64", with(releaseParams(), "version", "1;reboot"), "parameters.version"},
		"product via $ref":         {"buildimagefromrelease", "x86_64", with(releaseParams(), "product", "-x"), "parameters.product"},
		"srpm checksum bad":        {"buildrpm", "x86_64", map[string]any{"srpmUrl": "https://e.org/a.src.rpm", "srpmSha256": "zz"}, "parameters.srpmSha256"},
		"bcond bad":                {"buildrpm", "x86_64", map[string]any{"srpmUrl": "https://e.org/a.src.rpm", "with": []any{"a b"}}, "parameters.with.0"},
		"source missing filename":  {"buildsrpm", "x86_64", map[string]any{"spec": "x", "sources": []any{map[string]any{"url": "https://e.org/a"}}}, "parameters.sources.0.filename"},
		"source path traversal":    {"buildsrpm", "x86_64", map[string]any{"spec": "x", "sources": []any{map[string]any{"url": "https://e.org/a", "filename": "../../etc/x"}}}, "parameters.sources.0.filename"},
		"source unknown field":     {"buildsrpm", "x86_64", map[string]any{"spec": "x", "sources": []any{map[string]any{"url": "https://e.org/a", "filename": "a", "mode": "0777"}}}, "parameters.sources.0.mode"},
		"file hidden name":         {"buildsrpm", "x86_64", map[string]any{"spec": "x", "files": []any{map[string]any{"filename": ".bashrc", "content": ""}}}, "parameters.files.0.filename"},
		"too large":                {"buildsrpm", "x86_64", map[string]any{"spec": strings.Repeat("x", MaxParametersSize)}, "parameters"},
		"not JSON":                 {"buildsrpm", "x86_64", map[string]any{"spec": math.Inf(1)}, "parameters"},
		"spec too long characters": {"buildsrpm", "x86_64", map[string]any{"spec": strings.Repeat("é", 262145)}, "parameters"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.Validate(tc.task, tc.arch, tc.params)
			var ie *jobs.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Validate error = %v (%T), want *jobs.InvalidError", err, err)
			}
			if ie.Field != tc.field {
				t.Errorf("field = %q, want %q (error: %v)", ie.Field, tc.field, err)
			}
			if ie.Reason == "" || len(ie.Reason) > 300 {
				t.Errorf("reason %q: want a short explanation", ie.Reason)
			}
			// Render checks the same way.
			_, rerr := c.Render(tc.task, Input{JobID: "j1", Namespace: "ns", Arch: tc.arch, Parameters: tc.params})
			if !errors.As(rerr, &ie) || ie.Field != tc.field {
				t.Errorf("Render error = %v, want an InvalidError for %s", rerr, tc.field)
			}
		})
	}
}

func TestValidateAppliesDefaults(t *testing.T) {
	c := builtin(t)
	tests := map[string]struct {
		task   string
		params map[string]any
		want   map[string]any
	}{
		"release": {
			task:   "buildimagefromrelease",
			params: releaseParams(),
			want: map[string]any{
				"version": "24.03-LTS", "packages": []any{"bash", "kernel"}, "repos": []any{"https://example.org/os/"},
				"format": "calamares-iso", "product": "openEuler", "release": "1", "variant": "Server", "userID": "",
			},
		},
		"given values win": {
			task:   "buildimagefromrelease",
			params: map[string]any{"version": "1", "packages": []any{"a"}, "repos": []any{"http://r/"}, "format": "vhd", "release": "7"},
			want: map[string]any{
				"version": "1", "packages": []any{"a"}, "repos": []any{"http://r/"},
				"format": "vhd", "product": "openEuler", "release": "7", "variant": "Server", "userID": "",
			},
		},
		"rpm lists default empty": {
			task:   "buildrpm",
			params: map[string]any{"srpmUrl": "https://e.org/a.src.rpm"},
			want:   map[string]any{"srpmUrl": "https://e.org/a.src.rpm", "srpmSha256": "", "repos": []any{}, "with": []any{}, "without": []any{}},
		},
		"defaults inside list items": {
			task:   "buildsrpm",
			params: map[string]any{"spec": "x", "sources": []any{map[string]any{"url": "https://e.org/a", "filename": "a"}}},
			want: map[string]any{"spec": "x", "files": []any{},
				"sources": []any{map[string]any{"url": "https://e.org/a", "filename": "a", "sha256": ""}}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before, _ := json.Marshal(tc.params)
			got, err := c.Validate(tc.task, "x86_64", tc.params)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("effective parameters (-want +got):\n%s", diff)
			}
			after, _ := json.Marshal(tc.params)
			if string(before) != string(after) {
				t.Errorf("Validate modified its input: %s -> %s", before, after)
			}
			// Validating the effective parameters again changes nothing.
			again, err := c.Validate(tc.task, "x86_64", got)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again); diff != "" {
				t.Errorf("second Validate (-first +second):\n%s", diff)
			}
		})
	}
}

func TestTasksAndSteps(t *testing.T) {
	c := builtin(t)
	want := map[string][]string{
		"buildimagefromiso":     {"download-iso", "verify-iso", "edit-iso", "upload"},
		"buildimagefromrelease": {"prepare-repos", "build-image", "upload"},
		"buildrpm":              {"fetch-srpm", "build-rpm", "upload"},
		"buildsrpm":             {"fetch-sources", "build-srpm", "upload"},
	}
	got := map[string][]string{}
	var names []string
	for _, tk := range c.Tasks() {
		names = append(names, tk.Name)
		got[tk.Name] = tk.Steps
		if diff := cmp.Diff(tk.Steps, c.Steps(tk.Name)); diff != "" {
			t.Errorf("%s: Steps differs from Tasks: %s", tk.Name, diff)
		}
		if diff := cmp.Diff([]string{"x86_64", "aarch64"}, tk.Arches); diff != "" {
			t.Errorf("%s arches: %s", tk.Name, diff)
		}
		if tk.Description == "" {
			t.Errorf("%s: no description", tk.Name)
		}
		var schema map[string]any
		if err := json.Unmarshal(tk.Schema, &schema); err != nil || schema["type"] != "object" {
			t.Errorf("%s: schema %s: %v", tk.Name, tk.Schema, err)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(strings.Join(names, ","), "buildimagefromiso,buildimagefromrelease") {
		t.Errorf("Tasks not sorted: %v", names)
	}
	if c.Steps("nope") != nil {
		t.Error("Steps of an unknown task should be nil")
	}
	// Callers get copies.
	c.Tasks()[0].Steps[0] = "changed"
	c.Steps("buildrpm")[0] = "changed"
	if c.Tasks()[0].Steps[0] == "changed" || c.Steps("buildrpm")[0] == "changed" {
		t.Error("Tasks/Steps share memory with the catalogue")
	}
}
