#!/usr/bin/env bash
# Builds the nftegress image without a Docker engine, as an OCI archive that containerd can
# import (`ctr images import`), plus a tiny sandbox ("pause") image. The nftegress image holds
# what the Dockerfile's runtime stage holds: Node.js 24, nft and flock (the table's lock) with their
# shared libraries, /opt/nftegress/{package.json,node_modules (production only),dist/src,crds}, a
# nonroot user 65532, ENTRYPOINT node /opt/nftegress/dist/src/cmd/cli.js, USER 65532.
#
#   hack/node-image.sh OUT_DIR
#
# Writes OUT_DIR/nftegress.tar and OUT_DIR/pause.tar and prints two lines, "nftegress REF"
# and "pause REF" (REF as containerd names it after import with --base-name). Reproducible:
# every file time is fixed (SOURCE_DATE_EPOCH, default the last commit's time), so the same
# tree gives the same digest. Needs umoci, busybox-static, the built project (make build).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: hack/node-image.sh OUT_DIR}
TAG=${NFTEGRESS_IMAGE_TAG:-test}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

log() { echo "node-image: $*" >&2; }
die() { log "error: $*"; exit 1; }
for tool in umoci tar; do command -v "$tool" >/dev/null || die "$tool not found (apt-get install umoci)"; done
[[ -x /bin/busybox ]] || die "/bin/busybox not found (apt-get install busybox-static)"
[[ -f "$ROOT/dist/src/cmd/cli.js" ]] || die "dist/src/cmd/cli.js missing: run make build first"
node_bin=$("$ROOT/hack/node.sh")/node
nft_bin=$(command -v nft || echo /usr/sbin/nft)
flock_bin=$(command -v flock || echo /usr/bin/flock)
[[ -x "$nft_bin" && -x "$flock_bin" ]] || die "nft and flock must be installed (hack/deps.sh: nftables, util-linux)"

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copies a binary and every shared library ldd names (and the loader) into rootfs $1.
copy_with_libs() {
  local rootfs=$1 bin=$2 dest=$3 lib
  install -D -m 0755 "$bin" "$rootfs$dest"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    [[ -e "$rootfs$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# Packs rootfs $2 as image $1:$TAG with the config arguments that follow; writes $out/$1.tar.
pack() {
  local name=$1 rootfs=$2
  shift 2
  local layout=$work/$name-oci bundle=$work/$name-bundle
  find "$rootfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  umoci init --layout "$layout"
  umoci new --image "$layout:$TAG"
  umoci unpack --image "$layout:$TAG" "$bundle" >/dev/null
  cp -a "$rootfs/." "$bundle/rootfs/"
  umoci repack --history.created "$created" --history.created_by "hack/node-image.sh" --refresh-bundle --image "$layout:$TAG" "$bundle"
  umoci config --history.created "$created" --history.created_by "hack/node-image.sh" --image "$layout:$TAG" --created "$created" \
    --author nftegress --os linux --architecture amd64 "$@"
  umoci gc --layout "$layout"
  # Sorted names, fixed owner and times: the archive is as reproducible as its blobs.
  find "$layout" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    -C "$layout" -cf "$out/$name.tar" .
  local digest
  digest=$(grep -o '"digest":"sha256:[0-9a-f]*"' "$layout/index.json" | head -1 | cut -d'"' -f4)
  echo "$name localhost/$name:$TAG $digest"
}

# --- nftegress ---
app=$work/app
mkdir -p "$app/opt/nftegress" "$app/tmp" "$app/etc" "$app/usr/local/bin"
chmod 1777 "$app/tmp"
copy_with_libs "$app" "$node_bin" /usr/local/bin/node
copy_with_libs "$app" "$nft_bin" /usr/sbin/nft
copy_with_libs "$app" "$flock_bin" /usr/bin/flock
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin\n' >"$app/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$app/etc/group"
cp "$ROOT/package.json" "$ROOT/package-lock.json" "$app/opt/nftegress/"
cp -a "$ROOT/crds" "$app/opt/nftegress/crds"
mkdir -p "$app/opt/nftegress/dist"
cp -a "$ROOT/dist/src" "$app/opt/nftegress/dist/src"
# Production dependencies only, from the lock file, offline from npm's cache where possible.
(cd "$app/opt/nftegress" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)
rm -f "$app/opt/nftegress/package-lock.json" "$app/opt/nftegress/node_modules/.package-lock.json"
pack nftegress "$app" \
  --config.entrypoint /usr/local/bin/node --config.entrypoint /opt/nftegress/dist/src/cmd/cli.js \
  --config.cmd --help --config.user 65532:65532 --config.workingdir /opt/nftegress \
  --config.env NODE_ENV=production --config.env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# --- pause: the pod sandbox; sleeps until SIGTERM ---
pause=$work/pause
install -D -m 0755 /bin/busybox "$pause/bin/busybox"
pack pause "$pause" \
  --config.entrypoint /bin/busybox --config.entrypoint sh --config.entrypoint -c \
  --config.entrypoint "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"
