package allinone

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/omnibuildplatform/omni-orchestrator/shared/auth"
)

// LocalUser is the admin user the local mode creates on first start.
const LocalUser = "admin"

// localCredentials makes sure env's htpasswd and users files exist. On first start it creates an
// admin of every service with a random password, kept in <data>/credentials so that later runs
// print it again. Files that exist are left alone (add users to them freely), but the
// credentials file is made readable by its owner only, whatever mode it had.
func localCredentials(dataDir string, env *auth.UsersEnv) (user, password string, err error) {
	credPath := filepath.Join(dataDir, "credentials")
	if err := os.Chmod(credPath, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("protect local credentials: %w", err)
	}
	if b, err := os.ReadFile(credPath); err == nil {
		user, password, _ = strings.Cut(strings.TrimSpace(string(b)), ":")
	}
	_, herr := os.Stat(env.Htpasswd)
	_, uerr := os.Stat(env.Users)
	switch {
	case herr == nil && uerr == nil:
		return user, password, nil
	case !errors.Is(herr, os.ErrNotExist) && herr != nil:
		return "", "", herr
	case herr == nil || uerr == nil:
		return "", "", fmt.Errorf("%s and %s must both exist or both be missing", env.Htpasswd, env.Users)
	}
	raw := make([]byte, 18)
	_, _ = rand.Read(raw)
	user, password = LocalUser, base64.RawURLEncoding.EncodeToString(raw)
	line, err := auth.HashPassword(user, password)
	if err != nil {
		return "", "", err
	}
	files := map[string]string{
		env.Htpasswd: line + "\n",
		env.Users:    "# role: viewer | submitter | admin; services: names, or \"*\" for all\nusers:\n  " + user + ": {role: admin, services: [\"*\"]}\n",
		credPath:     user + ":" + password + "\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return "", "", fmt.Errorf("write local credentials: %w", err)
		}
		if err := os.Chmod(path, 0o600); err != nil { // WriteFile keeps an existing file's mode
			return "", "", fmt.Errorf("protect local credentials: %w", err)
		}
	}
	return user, password, nil
}
