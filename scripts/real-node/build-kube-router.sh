#!/usr/bin/env bash
# Provides kube-router (used here only for its NetworkPolicy firewall controller) and prints its
# path as the last line. Cached by version outside the repository.
#
# Source, in this order:
#   1. $CTF_KUBE_ROUTER_BIN, an existing binary (for example a newer release you built yourself);
#   2. the cache $CTF_KUBE_CACHE/real-node/bin/kube-router-<version>;
#   3. the Go module github.com/cloudnativelabs/kube-router/v2 at $CTF_KUBE_ROUTER_VERSION
#      (default: the newest version the Go module proxy lists). Older releases have published
#      security advisories; the script says so when it builds one. kube-router only enforces
#      NetworkPolicies between local test pods here, on a node that never leaves the machine.
set -euo pipefail

CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
BIN_DIR="$CACHE_ROOT/real-node/bin"
log() { printf '[kube-router %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$BIN_DIR"

if [[ -n "${CTF_KUBE_ROUTER_BIN:-}" && -x "${CTF_KUBE_ROUTER_BIN}" ]]; then
  echo "$CTF_KUBE_ROUTER_BIN"; exit 0
fi
for f in "$BIN_DIR"/kube-router-"${CTF_KUBE_ROUTER_VERSION:-v}"*; do
  if [[ -x "$f" ]]; then echo "$f"; exit 0; fi
done

ldflags() {
  echo "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$1 -X github.com/cloudnativelabs/kube-router/v2/pkg/version.BuildDate=1970-01-01T00:00:00Z"
}

start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mv_version="${CTF_KUBE_ROUTER_VERSION:-$(cd "$work" && go list -m -versions github.com/cloudnativelabs/kube-router/v2 | tr ' ' '\n' | tail -1)}"
[[ "$mv_version" == v* ]] || { log "the module proxy lists no kube-router/v2 version"; exit 1; }
log "building kube-router $mv_version from the Go module proxy"
[[ "$mv_version" == "v2.1.0" ]] && log "WARNING: security advisories are published for $mv_version; set CTF_KUBE_ROUTER_BIN to a newer build to use another"
CGO_ENABLED=0 GOBIN="$work" go install -trimpath -ldflags "$(ldflags "$mv_version")" \
  "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$mv_version"
mv "$work/kube-router" "$BIN_DIR/kube-router-$mv_version"
out="$BIN_DIR/kube-router-$mv_version"
log "kube-router ready ($(( $(date +%s) - start ))s)"
echo "$out"
