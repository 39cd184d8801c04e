#!/usr/bin/env bash
# Prepares this machine for the optional real node of the local cluster (idempotent):
# Debian packages (containerd, runc, CNI plugins, umoci, busybox-static, iptables, ipset,
# conntrack), kubelet and kube-proxy of the pinned Kubernetes version, kube-router (its
# NetworkPolicy controller only), Traefik (the local Gateway API implementation) and the local
# images. Prints "kube-router <path>" and "traefik <path>", then the Kubernetes binaries
# directory as the last line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { printf '[real-node-setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[[ "$(id -u)" == 0 ]] || { log "the real node needs root (network namespaces, iptables, cgroups)"; exit 1; }
PKGS=(containerd runc containernetworking-plugins umoci busybox-static iptables ipset conntrack file)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if (( ${#missing[@]} )); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

t0=$(date +%s)
BIN_DIR=$(bash "$ROOT/scripts/kube-binaries.sh" --with-kubelet | tail -1)
t1=$(date +%s)
KUBE_ROUTER=$(bash "$ROOT/scripts/real-node/build-kube-router.sh" | tail -1)
t2=$(date +%s)
IMAGES=$(bash "$ROOT/scripts/real-node/build-images.sh" | tail -1)
t3=$(date +%s)
TRAEFIK=$(bash "$ROOT/scripts/gateway/build-traefik.sh" | tail -1)
t4=$(date +%s)
bash "$ROOT/scripts/gateway/build-image.sh" "$TRAEFIK" >/dev/null
t5=$(date +%s)
log "kubelet/kube-proxy $((t1 - t0))s, kube-router $((t2 - t1))s, images $((t3 - t2))s, traefik $((t4 - t3))s, traefik image $((t5 - t4))s"
log "kube-router: $KUBE_ROUTER"
log "traefik: $TRAEFIK"
log "images: $IMAGES"
echo "kube-router $KUBE_ROUTER"
echo "traefik $TRAEFIK"
echo "$BIN_DIR"
