package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/term"

	"github.com/omnibuildplatform/omni-orchestrator/cmd/omnictl/internal/client"
)

// config is what the config file holds (and what the flags and environment override).
type config struct {
	// URL is the API's base URL.
	URL string `yaml:"url"`
	// User and Password are the basic-auth credentials.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Service is the default service of submit, list and queue.
	Service string `yaml:"service,omitempty"`
}

// configPath is the per-user config file: $OMNICTL_CONFIG, else omnictl/config.yaml in the
// user's config folder (~/.config on Linux).
func (a *app) configPath() (string, error) {
	if p := a.getenv("OMNICTL_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the config folder (set OMNICTL_CONFIG): %w", err)
	}
	return filepath.Join(dir, "omnictl", "config.yaml"), nil
}

// readConfig reads the config file; a missing file is an empty config.
func (a *app) readConfig() (config, string, error) {
	var c config
	path, err := a.configPath()
	if err != nil {
		return c, "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, path, nil
	}
	if err != nil {
		return c, path, fmt.Errorf("read config: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(a.stderr, "omnictl: warning: %s holds a password and others may read it (mode %v): chmod 600 it\n", path, fi.Mode().Perm())
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, path, fmt.Errorf("read config %s: %w", path, err)
	}
	return c, path, nil
}

// writeConfig writes c to path, readable by its owner only (it holds a password).
func writeConfig(path string, c config) error {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// settings resolves the API and credentials: flags, then the environment (OMNI_URL, OMNI_USER,
// OMNI_PASSWORD, OMNI_SERVICE), then the config file.
func (a *app) settings() (config, error) {
	c, path, err := a.readConfig()
	if err != nil {
		return c, err
	}
	for _, o := range []struct {
		dst  *string
		vals []string
	}{
		{&c.URL, []string{a.url, a.getenv("OMNI_URL")}},
		{&c.User, []string{a.user, a.getenv("OMNI_USER")}},
		{&c.Password, []string{a.getenv("OMNI_PASSWORD")}},
		{&c.Service, []string{a.getenv("OMNI_SERVICE")}},
	} {
		for _, v := range o.vals {
			if v != "" {
				*o.dst = v
				break
			}
		}
	}
	if c.URL == "" {
		return c, usageError("no API URL: run `omnictl login URL`, or set OMNI_URL (config file: %s)", path)
	}
	return c, nil
}

// client returns the API client of the resolved settings.
func (a *app) client() (*client.Client, config, error) {
	c, err := a.settings()
	if err != nil {
		return nil, c, err
	}
	return client.New(c.URL, c.User, c.Password), c, nil
}

// loginCmd: omnictl login [URL] --user U [--password-stdin] [--service S].
func (a *app) loginCmd(fs *flag.FlagSet) func(context.Context, []string) error {
	passwordStdin := fs.Bool("password-stdin", false, "read the password from stdin (default: prompt on a terminal, else $OMNI_PASSWORD)")
	service := fs.String("service", "", "default service of submit, list and queue")
	return func(ctx context.Context, args []string) error {
		if len(args) > 1 {
			return wantArgs(args, "[URL]")
		}
		c, path, err := a.readConfig()
		if err != nil {
			return err
		}
		c.URL = firstOf(append(args, a.url, a.getenv("OMNI_URL"), c.URL)...)
		c.User = firstOf(a.user, a.getenv("OMNI_USER"), c.User)
		c.Service = firstOf(*service, a.getenv("OMNI_SERVICE"), c.Service)
		if c.URL == "" {
			return usageError("login: give the API's URL (e.g. omnictl login http://127.0.0.1:8088 --user admin)")
		}
		if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usageError("login: URL %q: want http(s)://host[:port]", c.URL)
		}
		if c.User == "" {
			return usageError("login: give --user (or OMNI_USER)")
		}
		switch {
		case *passwordStdin:
			line, err := bufio.NewReader(a.stdin).ReadString('\n')
			if line == "" && err != nil {
				return fmt.Errorf("login: read the password from stdin: %w", err)
			}
			c.Password = strings.TrimRight(line, "\r\n")
		case a.getenv("OMNI_PASSWORD") != "":
			c.Password = a.getenv("OMNI_PASSWORD")
		case a.stdinTTY:
			fmt.Fprintf(a.stderr, "password of %s at %s: ", c.User, c.URL)
			b, err := term.ReadPassword(int(os.Stdin.Fd()))
			fmt.Fprintln(a.stderr)
			if err != nil {
				return fmt.Errorf("login: read the password: %w", err)
			}
			c.Password = string(b)
		default:
			return usageError("login: no password: use --password-stdin, OMNI_PASSWORD or a terminal")
		}
		// Any authenticated user may read the job types: a cheap check of the credentials.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := client.New(c.URL, c.User, c.Password).Tasks(ctx); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		if err := writeConfig(path, c); err != nil {
			return err
		}
		fmt.Fprintf(a.stderr, "logged in to %s as %s (saved in %s)\n", c.URL, c.User, path)
		return nil
	}
}

// firstOf returns the first non-empty value.
func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
