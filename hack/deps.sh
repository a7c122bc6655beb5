#!/usr/bin/env bash
# Installs what build, test and demo need when missing: Debian packages (nft, ip, conntrack,
# setpriv; prometheus for promtool and the dashboard's queries against a real Prometheus;
# containerd, runc, the CNI plugins, umoci
# and busybox for the real-node tier and `make demo-node`) and the npm dependencies (npm ci, redone
# only when package-lock.json changes).
# Node.js 24 itself comes from hack/node.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v conntrack >/dev/null 2>&1 || missing+=(conntrack)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v containerd >/dev/null 2>&1 || missing+=(containerd)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "hack/deps.sh: missing packages ${missing[*]}; run as root or install them" >&2
    exit 1
  fi
  echo "hack/deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2
fi

stamp=node_modules/.nftegress-lock
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "hack/deps.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error </dev/null >&2
  cp package-lock.json "$stamp"
fi
