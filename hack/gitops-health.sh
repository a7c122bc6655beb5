#!/usr/bin/env bash
# Provides the gitops-health program (hack/gitops-health: Argo CD's health Lua run in gopher-lua
# with Argo CD's libraries, and Flux's kstatus verdict) and prints its path as the last line of
# stdout. All progress goes to stderr.
#
#   NFTEGRESS_CACHE=<dir>  cache root (default ~/.cache/nftegress)
#
# Built with Go from the module versions pinned in hack/gitops-health/go.mod and go.sum (through
# the Go module proxy) into <cache>/gitops-health-<version>/, where <version> is a hash of the
# program's sources, so any change to them builds a new one.
set -euo pipefail
cd "$(dirname "$0")/gitops-health"

log() { echo "gitops-health: $*" >&2; }
die() { log "error: $*"; exit 1; }

root=${NFTEGRESS_CACHE:-$HOME/.cache/nftegress}
version=$(cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
dest=$root/gitops-health-$version
if [[ -x "$dest/gitops-health" ]]; then
  echo "$dest/gitops-health"
  exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go not found (needed to build hack/gitops-health)"

mkdir -p "$root"
# Same filesystem as $dest, so the final mv is an atomic rename.
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
log "building $version"
CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o "$tmp/gitops-health" . </dev/null >&2
if [[ ! -x "$dest/gitops-health" ]]; then
  rm -rf "$dest"
  mv -T "$tmp" "$dest" 2>/dev/null || [[ -x "$dest/gitops-health" ]] || die "could not move the build into $dest"
  mkdir -p "$tmp" # for the EXIT trap
fi
log "built in $((SECONDS - start))s into $dest"
echo "$dest/gitops-health"
