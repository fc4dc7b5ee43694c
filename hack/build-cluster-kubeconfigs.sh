#!/usr/bin/env bash
# Writes the kubeconfigs through which the central functions reach one remote build cluster, and
# stores them on the Knative cluster: for each identity of config/build-cluster/ (submit,
# status-sync, query, log-archive, apiserversource) the key <instance> of the Secret
# omni-kubeconfigs-<identity> in namespace omni, holding a kubeconfig with that ServiceAccount's
# token. Other keys of those Secrets (other build clusters) are kept. Run it after
# `kubectl --context <build-context> apply -f config/build-cluster/`, and again to rotate tokens.
#
#   hack/build-cluster-kubeconfigs.sh BUILD_CONTEXT INSTANCE [SERVER_URL]
#
#   BUILD_CONTEXT  kubectl context of the build cluster (admin rights to read the token Secrets)
#   INSTANCE       engine instance name, as in config/clusters/<arch>.yaml (e.g. arm-build-1)
#   SERVER_URL     API server URL as the Knative cluster reaches it (default: the context's)
#   KNATIVE_CONTEXT  kubectl context of the Knative cluster (default: the current context)
#   DRY_RUN=1        print the Secrets as YAML instead of applying them
set -eo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,/^set -eo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
build=$1 instance=$2 server=$3
ns=omni-jobs
kb() { kubectl --context "$build" "$@"; }
kk() { if [ -n "$KNATIVE_CONTEXT" ]; then kubectl --context "$KNATIVE_CONTEXT" "$@"; else kubectl "$@"; fi; }

if [ -z "$server" ]; then
  cluster=$(kubectl config view -o jsonpath="{.contexts[?(@.name==\"$build\")].context.cluster}")
  server=$(kubectl config view -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.server}")
fi
[ -n "$server" ] || { echo "no server URL for context $build; give SERVER_URL" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for id in submit status-sync query log-archive apiserversource; do
  sa=omni-$id
  token=$(kb -n "$ns" get secret "$sa-token" -o jsonpath='{.data.token}' | base64 -d)
  ca=$(kb -n "$ns" get secret "$sa-token" -o jsonpath='{.data.ca\.crt}')
  [ -n "$token" ] || { echo "$build: Secret $ns/$sa-token has no token yet (apply config/build-cluster/ first)" >&2; exit 1; }
  cat >"$tmp/$id" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: $instance
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: $sa
    user:
      token: $token
contexts:
  - name: $instance
    context:
      cluster: $instance
      user: $sa
      namespace: $ns
current-context: $instance
KUBECONFIG
  # Merge the key into the Secret, keeping the keys of other build clusters.
  patch=$(printf '{"data":{"%s":"%s"}}' "$instance" "$(base64 -w0 <"$tmp/$id")")
  secret=omni-kubeconfigs-$id
  if [ -n "$DRY_RUN" ]; then
    kk -n omni create secret generic "$secret" --from-file="$instance=$tmp/$id" --dry-run=client -o yaml
    echo ---
  elif kk -n omni get secret "$secret" >/dev/null 2>&1; then
    kk -n omni patch secret "$secret" --type merge -p "$patch" >/dev/null
    echo "updated key $instance of Secret omni/$secret"
  else
    kk -n omni create secret generic "$secret" --from-file="$instance=$tmp/$id" >/dev/null
    echo "created Secret omni/$secret with key $instance"
  fi
done
