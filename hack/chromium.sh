#!/usr/bin/env bash
# Installs Debian's chromium when no `chromium` is on PATH (idempotent) and prints its path.
# The console tests (test/e2e/console_test.go) drive it headless; they skip, saying why, when it
# is missing. Needs root (or sudo) and Debian's package lists; prints progress to stderr.
set -eo pipefail

if path=$(command -v chromium 2>/dev/null); then
	echo "$path"
	exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "chromium.sh: no chromium on PATH and no apt-get to install it" >&2
	exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "chromium.sh: no chromium on PATH; installing it needs root (apt-get install -y chromium)" >&2
		exit 1
	fi
	sudo="sudo -n"
fi
echo "chromium.sh: installing Debian's chromium (once)…" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
