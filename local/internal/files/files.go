// Package files holds what the local platform's launchers (the clusters of local/platform, the
// Cassandra node of local/cassandra) share: finding the checkout's hack/ scripts that build or
// fetch their tools, and reading the logs of the processes they start for error messages.
package files

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ErrNoScript: the script is not in the checkout (the binary runs outside it).
var ErrNoScript = errors.New("not found in the checkout")

// Script finds hack/<name>: next to this source file's module root when the source is on disk
// (tests, `go run`), else in the working directory or one of its parents.
func Script(name string) (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, "hack", name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", ErrNoScript
}

// ReadFrom returns the content of path from offset on.
func ReadFrom(path string, offset int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// Tail returns the last n lines of b, indented, for error messages.
func Tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var sb strings.Builder
	for _, l := range lines {
		sb.WriteString("    | ")
		sb.Write(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}
