#!/usr/bin/env bash
# Builds the local Traefik image as an OCI archive, like scripts/real-node/build-images.sh does
# for the sample images: one layer with the static traefik binary, its static configuration
# (scripts/gateway/traefik.yml) and a passwd entry for user 65532; no shell. Files have mtime 0
# and the config fixed dates, so the same binary and sources give the same archive.
# Usage: build-image.sh <traefik binary>. Output (last line): the archive,
# $CTF_KUBE_CACHE/real-node/images/traefik.tar, imported by the real node as
# docker.io/challenge-engine/traefik:<version>.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:?usage: build-image.sh <traefik binary>}"
TAG="${CTF_TRAEFIK_VERSION:-v3.7.13}"
CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
OUT="$CACHE_ROOT/real-node/images/traefik.tar"
CONFIG="$ROOT/scripts/gateway/traefik.yml"
EPOCH="1970-01-01T00:00:00Z"
log() { printf '[traefik-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

file "$BIN" | grep -q 'statically linked' || { log "$BIN is not a static binary (build it with CGO_ENABLED=0)"; exit 1; }
if [[ -f "$OUT" && -z "${CTF_IMAGES_REBUILD:-}" ]] && \
   [[ -z "$(find "$BIN" "$CONFIG" "${BASH_SOURCE[0]}" -newer "$OUT" -print -quit)" ]]; then
  log "traefik image up to date"
  echo "$OUT"
  exit 0
fi
start=$(date +%s)
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
oci="$work/oci"
umoci init --layout "$oci"
umoci new --image "$oci:$TAG"
umoci unpack --image "$oci:$TAG" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{etc/traefik,tmp}
install -m 0755 "$BIN" "$rootfs/traefik"
install -m 0644 "$CONFIG" "$rootfs/etc/traefik/traefik.yml"
printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'nonroot:x:65532:\n' > "$rootfs/etc/group"
# Go's resolver reads /etc/hosts first only when told; the pod reaches the apiserver by a hostAlias.
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
find "$rootfs" -exec touch -h -d "@0" {} +
umoci repack --image "$oci:$TAG" --history.created "$EPOCH" --history.created_by "challenge-engine scripts/gateway" "$work/bundle"
umoci config --image "$oci:$TAG" --created "$EPOCH" --history.created "$EPOCH" --config.user 65532:65532 \
  --config.workingdir / --os linux --architecture amd64 \
  --config.entrypoint /traefik --config.cmd --configFile=/etc/traefik/traefik.yml
umoci gc --layout "$oci"
tar --sort=name --mtime="@0" --owner=0 --group=0 -C "$oci" -cf "$OUT.part" .
mv "$OUT.part" "$OUT"
log "traefik:$TAG $(du -k "$OUT" | cut -f1) KiB ($(( $(date +%s) - start ))s)"
echo "$OUT"
