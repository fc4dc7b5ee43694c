package allinone

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
)

// A credentials file that exists with a wider mode (0644) is made 0600, whether the other
// files exist or are created.
func TestLocalCredentialsMode(t *testing.T) {
	for name, existing := range map[string]bool{"other files exist": true, "other files created": false} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env := &auth.UsersEnv{Htpasswd: filepath.Join(dir, "htpasswd"), Users: filepath.Join(dir, "users.yaml")}
			cred := filepath.Join(dir, "credentials")
			if err := os.WriteFile(cred, []byte("admin:pw\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(cred, 0o644); err != nil { // whatever the umask
				t.Fatal(err)
			}
			if existing {
				for _, p := range []string{env.Htpasswd, env.Users} {
					if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			if _, _, err := localCredentials(dir, env); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(cred)
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("credentials mode %o, want 600", m)
			}
		})
	}
}
