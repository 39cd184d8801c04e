#!/usr/bin/env bash
# Builds the local pause image and the sample challenge images as OCI archives from Debian's
# static busybox and the files under images/, without a registry or a container engine.
# Output: $CTF_KUBE_CACHE/real-node/images/<name>.tar (OCI layout, ref name = tag); the real
# node imports them into containerd's k8s.io namespace as docker.io/challenge-engine/<name>:<tag>.
# Every file gets mtime 0 and the image config fixed timestamps, so rebuilds from the same
# busybox and sources give the same layers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
OUT="$CACHE_ROOT/real-node/images"
BUSYBOX="${CTF_BUSYBOX:-/bin/busybox}"
EPOCH="1970-01-01T00:00:00Z"
log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

file "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || { log "$BUSYBOX is not a static busybox (apt-get install busybox-static)"; exit 1; }
mkdir -p "$OUT"

# name tag user entrypoint... ; each image: /bin/busybox + applet links, /etc/passwd, /app.
build() {
  local name="$1" tag="$2" user="$3" src="$4"; shift 4
  local work rootfs oci
  work=$(mktemp -d)
  oci="$work/oci"
  umoci init --layout "$oci"
  umoci new --image "$oci:$tag"
  umoci unpack --image "$oci:$tag" "$work/bundle" >/dev/null
  rootfs="$work/bundle/rootfs"
  mkdir -p "$rootfs"/{bin,etc,app,tmp,home/ctf,home/nonroot,var/lib/postgresql/data,var/run/postgresql}
  cp "$BUSYBOX" "$rootfs/bin/busybox"
  for applet in $("$BUSYBOX" --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
  done
  cp "$ROOT/images/common/passwd" "$ROOT/images/common/group" "$rootfs/etc/"
  [[ -n "$src" ]] && cp -r "$ROOT/images/$src/." "$rootfs/app/"
  find "$rootfs/app" -type f \( -name '*.sh' -o -path '*/cgi-bin/*' \) -exec chmod 0755 {} +
  chmod 1777 "$rootfs/tmp"
  chown -R 1000:1000 "$rootfs/home/ctf"
  chown -R 65532:65532 "$rootfs/home/nonroot"
  chown -R 999:999 "$rootfs/var/lib/postgresql" "$rootfs/var/run/postgresql"
  find "$rootfs" -exec touch -h -d "@0" {} +
  umoci repack --image "$oci:$tag" --history.created "$EPOCH" --history.created_by "challenge-engine images/$src" "$work/bundle"
  local args=(--image "$oci:$tag" --created "$EPOCH" --history.created "$EPOCH" --config.user "$user"
    --config.workingdir /app --config.env PATH=/bin --os linux --architecture amd64)
  for e in "$@"; do args+=(--config.entrypoint "$e"); done
  umoci config "${args[@]}"
  umoci gc --layout "$oci"
  tar --sort=name --mtime="@0" --owner=0 --group=0 -C "$oci" -cf "$OUT/$name.tar.part" .
  mv "$OUT/$name.tar.part" "$OUT/$name.tar"
  rm -rf "$work"
  log "$name:$tag $(du -k "$OUT/$name.tar" | cut -f1) KiB"
}

# Rebuild only when a source (images/, this script, busybox) is newer than the archives.
stamp="$OUT/.built"
if [[ -f "$stamp" && -z "${CTF_IMAGES_REBUILD:-}" ]] && \
   [[ -z "$(find "$ROOT/images" "${BASH_SOURCE[0]}" "$BUSYBOX" -newer "$stamp" -print -quit)" ]]; then
  log "images up to date in $OUT"
  echo "$OUT"
  exit 0
fi
start=$(date +%s)
build pause 3.10 65532:65532 pause /app/pause.sh
build web-notes 1.0 65532:65532 web-notes /app/serve.sh
build pwn-echo 1.0 1000:1000 pwn-echo /app/serve.sh
build sql-two-tier-app 1.0 65532:65532 sql-two-tier-app /app/serve.sh
build sql-two-tier-db 1.0 999:999 sql-two-tier-db /app/serve.sh
build probe 1.0 65532:65532 probe /app/probe.sh
touch "$stamp"
log "images ready in $OUT ($(( $(date +%s) - start ))s)"
echo "$OUT"
