package migrations_test

import (
	"bytes"
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/omnibuildplatform/omni-orchestrator/migrations"
)

var name = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.(up|down)\.(sql|cql)$`)

func TestFilesPairUp(t *testing.T) {
	tests := map[string]struct {
		fsys fs.FS
		ext  string
	}{
		"cassandra": {migrations.Cassandra, "cql"},
		"sqlite":    {migrations.SQLite, "sql"},
	}
	for dir, tc := range tests {
		t.Run(dir, func(t *testing.T) {
			entries, err := fs.ReadDir(tc.fsys, ".")
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) == 0 {
				t.Fatal("no migrations embedded")
			}
			seen := map[string]bool{}
			for _, e := range entries {
				m := name.FindStringSubmatch(e.Name())
				if m == nil || m[4] != tc.ext {
					t.Errorf("%s: want NNNN_name.up.%s / NNNN_name.down.%s", e.Name(), tc.ext, tc.ext)
					continue
				}
				seen[e.Name()] = true
			}
			for f := range seen {
				other := strings.Replace(f, ".up.", ".down.", 1)
				if other == f {
					other = strings.Replace(f, ".down.", ".up.", 1)
				}
				if !seen[other] {
					t.Errorf("%s has no %s", f, other)
				}
			}
		})
	}
}

// TestCassandraStatements checks the files the way golang-migrate's cassandra driver runs them
// with x-multi-statement: split on every ';', each piece one statement, empty pieces skipped.
// A ';' inside a comment, or a comment after the last statement, would send Cassandra a
// broken statement.
func TestCassandraStatements(t *testing.T) {
	stmt := regexp.MustCompile(`(?i)^(CREATE|DROP|ALTER)\s+(TABLE|KEYSPACE|INDEX|TYPE|MATERIALIZED VIEW)\b`)
	err := fs.WalkDir(migrations.Cassandra, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.Cassandra, path)
		if err != nil {
			return err
		}
		for i, piece := range bytes.Split(b, []byte(";")) {
			var code []string
			for _, line := range strings.Split(string(piece), "\n") {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "--") || strings.HasPrefix(line, "//") {
					continue
				}
				code = append(code, line)
			}
			text := strings.TrimSpace(string(piece))
			switch {
			case text == "":
			case len(code) == 0:
				t.Errorf("%s: piece %d is only a comment (a ';' in a comment, or a trailing comment): %q", path, i, text)
			case !stmt.MatchString(code[0]):
				t.Errorf("%s: piece %d does not start a DDL statement: %q", path, i, code[0])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSQLiteUpDownUp applies, reverts and re-applies the SQLite migrations through the same
// golang-migrate driver the store uses.
func TestSQLiteUpDownUp(t *testing.T) {
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	drv, err := migratesqlite.WithInstance(db, &migratesqlite.Config{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := iofs.New(migrations.SQLite, ".")
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "sqlite", drv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	tables := func() []string {
		rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_migrations' ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	want := "idempotency_keys,jobs,log_chunks,log_steps,slots"
	for _, step := range []struct {
		name string
		run  func() error
		want string
	}{
		{"up", m.Up, want},
		{"down", m.Down, ""},
		{"up again", m.Up, want},
	} {
		if err := step.run(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := strings.Join(tables(), ","); got != step.want {
			t.Errorf("tables after %s = %q, want %q", step.name, got, step.want)
		}
	}
}
