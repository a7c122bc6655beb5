#!/usr/bin/env bash
# Provides helm and prints the directory holding it as the last line of stdout.
# All progress goes to stderr.
#
#   HELM_BIN=<path>        use that helm binary instead
#   NFTEGRESS_CACHE=<dir>  cache root (default ~/.cache/nftegress)
#
# A missing helm is built from source with Go through the Go module proxy.
set -euo pipefail

HELM_VERSION=v3.22.0

log() { echo "helm: $*" >&2; }
die() { log "error: $*"; exit 1; }

root=${NFTEGRESS_CACHE:-$HOME/.cache/nftegress}

if [[ -n "${HELM_BIN:-}" ]]; then
  [[ -f "$HELM_BIN" && -x "$HELM_BIN" ]] || die "HELM_BIN=$HELM_BIN is not an executable file"
  if [[ "$(basename "$HELM_BIN")" == helm ]]; then
    dirname "$(realpath "$HELM_BIN")"
  else # callers expect <dir>/helm: link it under the cache
    mkdir -p "$root/helm-bin/bin"
    ln -sfn "$(realpath "$HELM_BIN")" "$root/helm-bin/bin/helm"
    echo "$root/helm-bin/bin"
  fi
  exit 0
fi

dest=$root/helm-$HELM_VERSION/bin
if [[ -f "$dest/helm" && -x "$dest/helm" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go not found (needed to build helm)"

mkdir -p "$root"
# Same filesystem as $dest, so the final mv is an atomic rename.
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
start=$SECONDS
log "building helm $HELM_VERSION"
export GOBIN=$tmp/bin CGO_ENABLED=0 GOFLAGS=
cd "$tmp"
# Like helm's Makefile: set the version, and the default Capabilities.KubeVersion
# (otherwise v1.20) from the client-go minor that helm is built with.
gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
k8s_minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")
[[ -n "$k8s_minor" ]] || die "could not read the client-go version of helm $HELM_VERSION"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
"$tmp/bin/helm" version --short >&2

if [[ ! -x "$dest/helm" ]]; then
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv -T "$tmp/bin" "$dest" 2>/dev/null || [[ -x "$dest/helm" ]] ||
    die "could not move helm into $dest"
fi
log "built in $((SECONDS - start))s into $dest"
echo "$dest"
