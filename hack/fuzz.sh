#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (default 30s): `go test -fuzz` takes
# one target of one package per run, so this lists the packages whose tests declare a
# `func FuzzXxx(f *testing.F)`, asks each for its targets (`go test -list '^Fuzz'`) and fuzzes
# them one after the other. A failure stops the run; the failing input is then in the package's
# testdata/fuzz/<target>/ (commit it with the fix: it becomes a seed that `go test` runs).
#   FUZZTIME  how long each target runs (a Go duration, or Nx for N executions)
#   FUZZ      only the targets whose name matches this regexp (default: all)
#   GO        the go command (default: go)
set -eo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
cd "$(dirname "$0")/.."

pkgs=$(grep -rlE --include='*_test.go' '^func Fuzz[A-Z0-9_][A-Za-z0-9_]*\(f \*testing\.F\)' . | xargs -n1 dirname | sort -u)
ran=0
for pkg in $pkgs; do
  for target in $("$GO" test -list '^Fuzz' "$pkg" | grep -E '^Fuzz' | grep -E -- "$FUZZ" || true); do
    echo "fuzz: $pkg $target for $FUZZTIME" >&2
    # -parallel 1: the targets share the machine with everything else; one worker is enough to
    # find what the seeds miss in a bounded run.
    "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg"
    ran=$((ran + 1))
  done
done
echo "fuzz: $ran targets ran for $FUZZTIME each, no failure" >&2
