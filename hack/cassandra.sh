#!/usr/bin/env bash
# Fetches the pinned Apache Cassandra (org.apache.cassandra:cassandra-all, DESIGN §7) and its
# runtime dependencies from Maven Central into the tools cache, keyed by version, unless they are
# already there (later runs work offline). Prints the folder of the jars (<cache>/cassandra-<v>/lib)
# on stdout; progress goes to stderr. local/cassandra runs it when the jars are missing.
#   OMNI_TOOLS_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, + /omni-orchestrator/tools)
# Needs Java 17 (Cassandra 5.0 runs on 11 or 17) and Maven; a missing one is an error that says
# what to install.
set -eo pipefail

CASSANDRA=5.0.9 # keep in step with local/cassandra.Version
here=$(cd "$(dirname "$0")" && pwd)
cache=${OMNI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omni-orchestrator/tools}
dir="$cache/cassandra-$CASSANDRA"
stamp="$dir/.complete"

log() { echo "cassandra: $*" >&2; }
die() { log "$*"; exit 1; }

if [ -f "$stamp" ]; then
  echo "$dir/lib"
  exit 0
fi

command -v java >/dev/null ||
  die "java not found: Cassandra $CASSANDRA needs a Java 17 runtime (Debian: apt-get install openjdk-17-jre-headless)"
command -v mvn >/dev/null ||
  die "mvn not found: fetching Cassandra $CASSANDRA needs Maven (Debian: apt-get install maven)"

mkdir -p "$cache"
# One fetch at a time: parallel test binaries may all ask for it; the later ones wait, then find
# it fetched.
if command -v flock >/dev/null; then
  exec 9>"$cache/.cassandra.lock"
  flock -n 9 || { log "waiting for another fetch of Cassandra $CASSANDRA"; flock 9; }
  if [ -f "$stamp" ]; then
    echo "$dir/lib"
    exit 0
  fi
fi

log "fetching Cassandra $CASSANDRA and its dependencies with Maven (first time only; cached in $dir)"
start=$SECONDS
tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
# The Maven repository lives in the cache too, so that removing the cache removes everything.
# Each artifact fetched prints one "Downloaded from" line: that is the progress.
mvn -B -Dstyle.color=never -f "$here/cassandra/pom.xml" \
  -Dmaven.repo.local="$cache/maven" \
  -Dcassandra.version="$CASSANDRA" \
  dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >&2 ||
  die "fetch of org.apache.cassandra:cassandra-all:$CASSANDRA failed (see Maven's output above; is Maven Central reachable?)"
ls "$tmp/lib"/cassandra-all-"$CASSANDRA".jar >/dev/null 2>&1 ||
  die "Maven copied no cassandra-all-$CASSANDRA.jar into $tmp/lib"
rm -rf "$dir"
mv "$tmp" "$dir"
touch "$stamp"
log "fetched Cassandra $CASSANDRA ($(ls "$dir/lib" | wc -l) jars, $(du -sh "$dir/lib" | cut -f1)) in $((SECONDS - start))s"
echo "$dir/lib"
