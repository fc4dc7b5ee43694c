#!/usr/bin/env bash
# Builds the pinned tools of the local platform (DESIGN §7) into a cache outside the checkout,
# keyed by tool version and Go version, skipping what is already built. Prints the bin folder.
#   OMNI_TOOLS_CACHE  cache root (default: $XDG_CACHE_HOME or ~/.cache, + /omni-orchestrator/tools)
#   OMNI_TOOLS_IMAGES non-empty: also build ko and crane (images, deploy, test/deploy)
set -eo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${OMNI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/omni-orchestrator/tools}
gov=$(go env GOVERSION)
K8S=v1.37.2 ETCD=v3.6.16 KWOK=v0.8.0 EVENTING=v0.50.0 KO=v0.19.1 CRANE=v0.21.7
bin="$cache/bin"
mkdir -p "$bin"

log() { echo "tools: $*" >&2; }

# One build at a time: parallel test processes may all ask for missing tools; the later ones wait,
# then find them built.
if command -v flock >/dev/null; then
  exec 9>"$cache/.lock"
  flock -n 9 || { log "waiting for another build of the tools"; flock 9; }
fi

# build NAME VERSION CMD... : runs CMD (which writes $out) unless $cache/NAME-VERSION-GO exists.
build() {
  local name=$1 version=$2; shift 2
  local stamp="$cache/stamps/$name-$version-$gov"
  if [ -f "$stamp" ] && [ -x "$bin/$name" ]; then
    return 0
  fi
  log "building $name $version (first time only; cached in $cache)"
  local start=$SECONDS
  out="$bin/$name.tmp"
  "$@"
  mv "$out" "$bin/$name"
  mkdir -p "$cache/stamps" && touch "$stamp"
  log "built $name in $((SECONDS - start))s"
}

k8s() { (cd "$here/tools/kubernetes" && GOFLAGS=-mod=mod go build -trimpath -o "$out" "k8s.io/kubernetes/cmd/$1"); }
build etcd "$ETCD" bash -c "cd '$here/tools/etcd' && GOFLAGS=-mod=mod go build -trimpath -o \"\$0\" go.etcd.io/etcd/server/v3" "$bin/etcd.tmp"
build kube-apiserver "$K8S" k8s kube-apiserver
build kube-controller-manager "$K8S" k8s kube-controller-manager
build kube-scheduler "$K8S" k8s kube-scheduler
build kubectl "$K8S" k8s kubectl
gobin() { (cd "$here/tools/adapter" && GOFLAGS=-mod=mod go build -trimpath -o "$out" "$1"); }
build apiserver_receive_adapter "$EVENTING" gobin knative.dev/eventing/cmd/apiserver_receive_adapter
inst() { local d; d=$(mktemp -d); GOBIN=$d go install "$1@$2"; mv "$d/$(basename "$1")" "$out"; rm -rf "$d"; }
build kwok "$KWOK" inst sigs.k8s.io/kwok/cmd/kwok "$KWOK"
build kwokctl "$KWOK" inst sigs.k8s.io/kwok/cmd/kwokctl "$KWOK"
# Image tools (make images/deploy, test/deploy), only when asked: ko and crane, both from the
# module hack/tools/ko (ko's own go-containerregistry version for crane).
if [ -n "$OMNI_TOOLS_IMAGES" ]; then
  image() { (cd "$here/tools/ko" && GOFLAGS=-mod=mod go build -trimpath -o "$out" "$1"); }
  build ko "$KO" image github.com/google/ko
  build crane "$CRANE" image github.com/google/go-containerregistry/cmd/crane
fi
echo "$bin"
