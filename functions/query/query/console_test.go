package query

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The console's files are served under /ui/ with their types and a strict CSP; /v1/me says who
// the caller is.
func TestConsoleServed(t *testing.T) {
	srv, _ := apiServer(t)
	tests := map[string]struct {
		path     string
		wantCode int
		wantType string
		wantBody string
	}{
		"the page":          {"/ui/", 200, "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		"a module":          {"/ui/app.js", 200, "text/javascript; charset=utf-8", "import"},
		"the style sheet":   {"/ui/style.css", 200, "text/css; charset=utf-8", "@media"},
		"no such file":      {"/ui/nope.js", 404, "", ""},
		"outside the tree":  {"/ui/../openapi.json", 307, "", ""}, // the mux redirects to the clean path
		"the folder itself": {"/ui", 307, "", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			req.Header.Set("X-Test-User", "svc")
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.wantType != "" && resp.Header.Get("Content-Type") != tc.wantType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.wantType)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body does not contain %q", tc.wantBody)
			}
			if strings.HasPrefix(tc.path, "/ui/") && tc.wantCode == 200 {
				if csp := resp.Header.Get("Content-Security-Policy"); csp != consoleCSP {
					t.Errorf("Content-Security-Policy %q, want %q", csp, consoleCSP)
				}
			}
		})
	}
}

func TestMe(t *testing.T) {
	srv, _ := apiServer(t)
	code, body := call(t, srv, "svc", http.MethodGet, "/v1/me", "")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/me: %d %s", code, body)
	}
	var got Me
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Me{User: "svc", Role: "viewer", Services: []string{"svc"}}, got); d != "" {
		t.Errorf("me (-want +got):\n%s", d)
	}
}

// The console loads nothing from elsewhere (no CDN), and every module it imports and every file
// its page names is embedded.
func TestConsoleSelfContained(t *testing.T) {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		t.Fatal(err)
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//|from\s+["']https?:`)
	ref := regexp.MustCompile(`(?:from\s+|import\s*\(\s*|src=|href=)["'](\./)?([a-z][a-z0-9-]*\.(?:js|css))["']`)
	err = fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads from another site: %s", path, m)
		}
		for _, m := range ref.FindAllSubmatch(b, -1) {
			if _, err := fs.Stat(sub, string(m[2])); err != nil {
				t.Errorf("%s names %s, which is not embedded", path, m[2])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
