#!/usr/bin/env bash
# Everything the local cluster needs, built or installed once and cached outside the repository:
#  - on Linux as root: the real node (Debian packages, kubelet, kube-proxy, kube-router, the
#    sample images) and the local gateway (Traefik), with the control-plane binaries;
#  - elsewhere: the control-plane binaries only (instances then run on kwok's fake node).
# Idempotent; a later run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ "$(uname -s)" == Linux && "$(id -u)" == 0 ]]; then
  bash "$ROOT/scripts/real-node/setup.sh" >/dev/null
  echo "[setup] ready: the control plane, the real node and the local gateway (npm run dev, npm run deploy:local)" >&2
else
  bash "$ROOT/scripts/kube-binaries.sh" >/dev/null
  echo "[setup] ready: the control plane only; the real node and the gateway need Linux and root" >&2
fi
