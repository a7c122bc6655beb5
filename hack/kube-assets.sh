#!/usr/bin/env bash
# Provides envtest-style Kubernetes test binaries (kube-apiserver, etcd, kubectl,
# kube-controller-manager) and prints the directory holding them as the last
# line of stdout. All progress goes to stderr.
#
#   hack/kube-assets.sh          the envtest set above
#   hack/kube-assets.sh --node   kubelet and kube-scheduler (the real-node tier),
#                                cached under their own key
#
#   KUBEBUILDER_ASSETS=<dir>  use that directory (must hold all four binaries)
#   NFTEGRESS_CACHE=<dir>     cache root (default ~/.cache/nftegress)
#
# Binaries missing from the cache are built from source with Go through the Go
# module proxy (about 8 minutes cold on 2 cores; later builds reuse Go's cache).
set -euo pipefail

KUBE_VERSION=v1.35.4   # k8s.io/kubernetes; staging modules are v0.<minor>.<patch>
ETCD_VERSION=v3.6.16
BINARIES=(kube-apiserver etcd kubectl kube-controller-manager)
KUBE_CMDS=(kube-apiserver kube-controller-manager kubectl)
KEY=kube-$KUBE_VERSION-etcd-$ETCD_VERSION
if [[ "${1:-}" == --node ]]; then
  BINARIES=(kubelet kube-scheduler)
  KUBE_CMDS=(kubelet kube-scheduler)
  KEY=kube-node-$KUBE_VERSION
  unset KUBEBUILDER_ASSETS
elif [[ -n "${1:-}" ]]; then
  echo "usage: hack/kube-assets.sh [--node]" >&2; exit 2
fi

log() { echo "kube-assets: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Prints the first of BINARIES that is not an executable file in $1.
first_missing() {
  local b
  for b in "${BINARIES[@]}"; do
    [[ -f "$1/$b" && -x "$1/$b" ]] || { echo "$b"; return; }
  done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  missing=$(first_missing "$KUBEBUILDER_ASSETS")
  [[ -z "$missing" ]] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $missing"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

root=${NFTEGRESS_CACHE:-$HOME/.cache/nftegress}
dest=$root/$KEY/bin
if [[ -z "$(first_missing "$dest")" ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || die "go not found (needed to build the binaries)"
export GOFLAGS=-mod=mod CGO_ENABLED=0

mkdir -p "$root"
# Same filesystem as $dest, so the final mv is an atomic rename.
tmp=$(mktemp -d "$root/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$tmp/bin" "$tmp/kube" "$tmp/etcd"
start=$SECONDS

# --- kube-apiserver, kube-controller-manager, kubectl ---
log "building Kubernetes $KUBE_VERSION ${KUBE_CMDS[*]} in $tmp"
staging=v0.${KUBE_VERSION#v1.}
gomod=$(cd "$tmp" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
(
  cd "$tmp/kube"
  go mod init nftegress.local/kube-assets >/dev/null 2>&1
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  # k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths;
  # point each of them at the published release instead.
  sed -n 's|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|\1|p' "$gomod" |
    while read -r mod; do go mod edit -replace="$mod=$mod@$staging"; done
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in "${KUBE_CMDS[@]}"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n'
  } >tools.go
  go mod tidy >&2
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  for cmd in "${KUBE_CMDS[@]}"; do
    log "  go build $cmd"
    go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/$cmd" "k8s.io/kubernetes/cmd/$cmd"
  done
)

# --- etcd (envtest set only) ---
[[ " ${BINARIES[*]} " != *" etcd "* ]] || (
  log "building etcd $ETCD_VERSION"
  cd "$tmp/etcd"
  go mod init nftegress.local/etcd-assets >/dev/null 2>&1
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3
)

missing=$(first_missing "$tmp/bin")
[[ -z "$missing" ]] || die "build produced no $missing"
"$tmp/bin/${KUBE_CMDS[0]}" --version >&2

# Atomic install; replace an incomplete cache dir, but keep one a concurrent build completed.
if [[ -n "$(first_missing "$dest")" ]]; then
  rm -rf "$dest"
  mkdir -p "$(dirname "$dest")"
  mv -T "$tmp/bin" "$dest" 2>/dev/null || [[ -z "$(first_missing "$dest")" ]] ||
    die "could not move binaries into $dest"
fi
log "built in $((SECONDS - start))s into $dest"
echo "$dest"
