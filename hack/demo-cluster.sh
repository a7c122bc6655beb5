#!/usr/bin/env bash
# make demo-cluster: see test/demo/cluster.ts. Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then echo "make demo-cluster needs root (it creates network namespaces)" >&2; exit 1; fi
exec node dist/test/demo/cluster.js
