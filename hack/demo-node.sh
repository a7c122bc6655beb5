#!/usr/bin/env bash
# make demo-node [DEMO_ARGS=--keep]: see test/demo/node.ts. Needs root (network namespaces,
# containerd, kubelet); hack/node-cluster.sh preflight says what else is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "make demo-node needs root (network namespaces, containerd, kubelet)" >&2; exit 1; fi
exec node dist/test/demo/node.js "$@"
