#!/usr/bin/env bash
# Provides the control-plane binaries the local cluster and the test suite need, one pinned
# Kubernetes version, and prints the directory that holds them as its last line.
#
# Where they come from, in this order, per binary:
#   1. $KUBEBUILDER_ASSETS (the envtest convention), when it holds that binary;
#   2. the versioned cache  $CTF_KUBE_CACHE/<version>/bin  (default ~/.cache/challenge-engine);
#   3. the official release download (fails fast without internet);
#   4. a build from the official Go modules through the Go module proxy.
# Binaries are never written into the repository.
set -euo pipefail

KUBE_VERSION="${CTF_KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${CTF_ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${CTF_KWOK_VERSION:-v0.8.0}"
CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
BIN_DIR="$CACHE_ROOT/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin"

KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
WANT=("${KUBE_BINS[@]}" etcd kwok)
# --with-kubelet: also the node components the optional real node runs (kubelet, kube-proxy).
if [[ "${1:-}" == "--with-kubelet" ]]; then
  KUBE_BINS+=(kubelet kube-proxy)
  WANT+=(kubelet kube-proxy)
fi

log() { printf '[kube-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

mkdir -p "$BIN_DIR"

have() { [[ -x "$BIN_DIR/$1" ]]; }

# 1. KUBEBUILDER_ASSETS: link what it has into the cache directory, so one directory holds all.
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in "${WANT[@]}"; do
    if [[ -x "$KUBEBUILDER_ASSETS/$b" ]] && ! have "$b"; then
      ln -sf "$KUBEBUILDER_ASSETS/$b" "$BIN_DIR/$b"
      log "using $b from KUBEBUILDER_ASSETS"
    fi
  done
fi

missing() {
  local out=()
  for b in "$@"; do have "$b" || out+=("$b"); done
  echo "${out[@]:-}"
}

# 3. Release download, for machines with internet. Short timeouts: fall through quickly.
if [[ -n "$(missing "${KUBE_BINS[@]}")" && "${CTF_KUBE_NO_DOWNLOAD:-}" != "1" ]]; then
  arch=$(go env GOARCH 2>/dev/null || echo amd64)
  for b in $(missing "${KUBE_BINS[@]}"); do
    url="https://dl.k8s.io/release/$KUBE_VERSION/bin/linux/$arch/$b"
    if curl -fsSL --connect-timeout 3 --max-time 300 -o "$BIN_DIR/$b.part" "$url" 2>/dev/null; then
      chmod +x "$BIN_DIR/$b.part" && mv "$BIN_DIR/$b.part" "$BIN_DIR/$b"
      log "downloaded $b $KUBE_VERSION"
    else
      rm -f "$BIN_DIR/$b.part"
      log "release download unavailable; building from Go modules instead"
      break
    fi
  done
fi

GO_LDFLAGS_VERSION() {
  local v="$1" major minor
  major=$(echo "${v#v}" | cut -d. -f1)
  minor=$(echo "${v#v}" | cut -d. -f2)
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

# 4a. Kubernetes components: a throwaway module requiring k8s.io/kubernetes, with each staging
# module (replaced by a local path upstream) replaced by its published v0.Y.Z version.
build_kube() {
  local bins=("$@") work gomod staging_version
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  staging_version="v0.${KUBE_VERSION#v1.}"
  log "building ${bins[*]} $KUBE_VERSION from Go modules (cold: tens of minutes on 2 cores)"
  (
    cd "$work"
    go mod init ctf.local/kubebuild >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [[ -f "$gomod" ]] || { log "cannot read go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
    # the go directive must be at least the one kubernetes asks for
    gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
    go mod edit -go="$gover"
    count=0
    while read -r mod; do
      go mod edit -replace="$mod=$mod@$staging_version"
      count=$((count + 1))
    done < <(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
    log "replaced $count staging modules with $staging_version"
    go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
    pkgs=()
    for b in "${bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    go get "${pkgs[@]/%/@$KUBE_VERSION}" >/dev/null
    CGO_ENABLED=0 go build -trimpath -ldflags "$(GO_LDFLAGS_VERSION "$KUBE_VERSION")" -o "$BIN_DIR/" "${pkgs[@]}"
  )
}

# 4b. etcd: its server module has package main at its root; its own replace directives block
# `go install`, so it is built as a dependency of a throwaway module.
build_etcd() {
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  log "building etcd $ETCD_VERSION from Go modules"
  (
    cd "$work"
    go mod init ctf.local/etcdbuild >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3
  )
}

# 4c. kwok has no replace directives, so go install works.
build_kwok() {
  log "building kwok $KWOK_VERSION from Go modules"
  CGO_ENABLED=0 GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

# kwok's stock Stage objects ship in its module; the local cluster passes them to kwok --config.
write_kwok_stages() {
  local dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  local stage="$dir/kustomize/stage"
  {
    for f in "$stage"/node/fast/node-initialize.yaml "$stage"/node/heartbeat-with-lease/*.yaml \
             "$stage"/pod/fast/pod-ready.yaml "$stage"/pod/fast/pod-complete.yaml "$stage"/pod/fast/pod-delete.yaml; do
      [[ -f "$f" ]] || { log "kwok stage file missing: $f"; return 1; }
      echo "---"
      cat "$f"
    done
  } > "$BIN_DIR/kwok-stages.yaml.part"
  mv "$BIN_DIR/kwok-stages.yaml.part" "$BIN_DIR/kwok-stages.yaml"
}

start=$(date +%s)
need_kube=$(missing "${KUBE_BINS[@]}")
[[ -n "$need_kube" ]] && build_kube $need_kube
have etcd || build_etcd
have kwok || build_kwok
[[ -f "$BIN_DIR/kwok-stages.yaml" ]] || write_kwok_stages

still=$(missing "${WANT[@]}")
if [[ -n "$still" ]]; then
  log "missing after build: $still"
  exit 1
fi
log "binaries ready in $BIN_DIR ($(( $(date +%s) - start ))s)"
echo "$BIN_DIR"
