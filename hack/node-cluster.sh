#!/usr/bin/env bash
# A real one-node Kubernetes cluster that lives entirely inside one network namespace: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd and kubelet all run in
# it, so a hostNetwork pod (the nftegress agent) enforces on that namespace and never on the
# machine's own ruleset. Everything it writes is under WORK, except what the kernel keeps
# elsewhere (cgroups under /nftegress-<id> in each hierarchy, CNI results under /var/lib/cni,
# pod log links in /var/log/containers, kubelet's kernel sysctls), which `down` removes or
# restores.
#
#   hack/node-cluster.sh preflight             says exactly what is missing; exit 1 if anything
#   hack/node-cluster.sh up WORK NETNS NODE_IP starts the cluster in /run/netns/NETNS (which
#                                              must exist, lo up, NODE_IP on an interface)
#   hack/node-cluster.sh import WORK TAR...    imports OCI archives into its containerd
#   hack/node-cluster.sh down WORK             stops and removes everything; idempotent
#
# After `up`, WORK/env holds KUBECONFIG, NETNS, NODE_NAME, NODE_IP and BIN (kubectl's
# directory); run clients with `nsenter --net=/run/netns/NETNS kubectl ...`. Progress and
# errors go to stderr; component logs are WORK/logs/*.log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NODE_NAME=${NODE_NAME:-node-1}
POD_CIDR=10.244.0.0/24 # the first /24 of --cluster-cidr: kube-controller-manager gives it to the node
SERVICE_CIDR=10.96.0.0/24
# The sysctls kubelet sets at start (protectKernelDefaults: false); `down` puts them back.
KERNEL_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

log() { echo "node-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
preflight() {
  local missing=() t
  [[ $(id -u) -eq 0 ]] || missing+=("root (run as uid 0: network namespaces, mounts, cgroups)")
  if ! ip netns add nfte-preflight-$$ 2>/dev/null; then
    missing+=("network namespaces (ip netns add failed)")
  else
    ip netns del nfte-preflight-$$ || true
  fi
  for t in containerd ctr runc umoci nsenter openssl nft iptables; do
    command -v "$t" >/dev/null || missing+=("$t (apt-get install containerd runc umoci util-linux openssl nftables iptables)")
  done
  for t in bridge host-local loopback; do
    [[ -x /usr/lib/cni/$t ]] || missing+=("/usr/lib/cni/$t (apt-get install containernetworking-plugins)")
  done
  [[ -x /bin/busybox ]] || missing+=("/bin/busybox (apt-get install busybox-static)")
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || missing+=("overlay filesystem (containerd's snapshotter)")
  [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] || missing+=("a cgroup memory controller under /sys/fs/cgroup")
  if ((${#missing[@]})); then
    for t in "${missing[@]}"; do log "missing: $t"; done
    return 1
  fi
  log "preflight ok"
}

# ---------------------------------------------------------------------------------------------
# Prints the cgroup hierarchies this machine has (one path each; v1 controllers and v2).
hierarchies() {
  local d
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then echo /sys/fs/cgroup; return; fi
  for d in /sys/fs/cgroup/*/; do
    d=${d%/}
    [[ -L $d ]] && continue # cpu -> cpu,cpuacct links
    mountpoint -q "$d" && echo "$d"
  done
}

cert() { # name subject [SANs]: a key and a certificate signed by WORK/pki/ca
  local name=$1 subj=$2 san=${3:-} pki=$WORK/pki
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [[ -n $san ]] && echo "subjectAltName=$san"
  } >"$pki/$name.ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

kubeconfig() { # file user cert-name server
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "$4", certificate-authority: "$WORK/pki/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$WORK/pki/$3.crt", client-key: "$WORK/pki/$3.key"}
contexts:
- name: node
  context: {cluster: node, user: $2}
current-context: node
EOF
}

in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

start() { # name command...: in the namespace, detached, pid in WORK/pids/name
  local name=$1
  shift
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" </dev/null >"$WORK/logs/$name.log" 2>&1 &
  echo $! >"$WORK/pids/$name"
}

alive_or_die() {
  local name=$1 pid
  pid=$(cat "$WORK/pids/$name")
  kill -0 "$pid" 2>/dev/null || die "$name exited; last lines of $WORK/logs/$name.log:
$(tail -n 20 "$WORK/logs/$name.log")"
}

wait_for() { # what seconds command...
  local what=$1 secs=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.3
  done
}

kubectl_ns() { in_ns "$BIN/kubectl" --kubeconfig "$WORK/admin.kubeconfig" "$@"; }

up() {
  WORK=$1 NETNS=$2 NODE_IP=$3
  [[ -e /run/netns/$NETNS ]] || die "no network namespace $NETNS"
  preflight
  mkdir -p "$WORK"/{pki,logs,pids,etcd,kubelet,containerd/root,containerd/state,cni/net.d,cni/ipam,pod-logs}
  WORK=$(cd "$WORK" && pwd)
  BIN=$("$ROOT/hack/kube-assets.sh" | tail -n1)
  NODE_BIN=$("$ROOT/hack/kube-assets.sh" --node | tail -n1)
  ID=$(basename "$WORK" | tr -c 'a-zA-Z0-9\n' - | tail -c 13)
  CGROUP=/nftegress-$ID
  cat >"$WORK/env" <<EOF
KUBECONFIG=$WORK/admin.kubeconfig
NETNS=$NETNS
NODE_NAME=$NODE_NAME
NODE_IP=$NODE_IP
BIN=$BIN
CGROUP=$CGROUP
EOF
  local s
  for s in "${KERNEL_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$WORK/sysctls"

  log "certificates"
  local pki=$WORK/pki
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=nftegress-node-ca" -days 2 -sha256 -out "$pki/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:$NODE_IP,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  cert admin "/O=system:masters/CN=admin"
  cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME"
  cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  kubeconfig "$WORK/admin.kubeconfig" admin admin https://127.0.0.1:6443
  kubeconfig "$WORK/kubelet.kubeconfig" "system:node:$NODE_NAME" kubelet-client https://127.0.0.1:6443

  log "control plane in $NETNS"
  start etcd "$BIN/etcd" --name node --data-dir "$WORK/etcd" --unsafe-no-fsync \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380 --listen-metrics-urls=
  start kube-apiserver "$BIN/kube-apiserver" --etcd-servers http://127.0.0.1:2379 \
    --bind-address 0.0.0.0 --secure-port 6443 --advertise-address "$NODE_IP" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --service-cluster-ip-range "$SERVICE_CIDR" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --allow-privileged=true --profiling=false
  wait_for "kube-apiserver /readyz" 90 kubectl_ns get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$WORK/admin.kubeconfig" \
    --authentication-kubeconfig "$WORK/admin.kubeconfig" --authorization-kubeconfig "$WORK/admin.kubeconfig" \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --leader-elect=false --secure-port 0 --use-service-account-credentials=false \
    --allocate-node-cidrs=true --cluster-cidr 10.244.0.0/16 --node-cidr-mask-size 24
  start kube-scheduler "$NODE_BIN/kube-scheduler" --kubeconfig "$WORK/admin.kubeconfig" \
    --authentication-kubeconfig "$WORK/admin.kubeconfig" --authorization-kubeconfig "$WORK/admin.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 10259

  log "containerd in $NETNS"
  cat >"$WORK/containerd/config.toml" <<EOF
version = 2
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$WORK/containerd/containerd.sock"
[ttrpc]
  address = "$WORK/containerd/containerd.sock.ttrpc"
[debug]
  address = "$WORK/containerd/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:test"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$WORK/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni/net.d"
EOF
  cat >"$WORK/cni/net.d/10-nftegress-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "nfte-$ID",
  "plugins": [
    {"type": "bridge", "bridge": "nfte-br0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$WORK/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF
  start containerd containerd --config "$WORK/containerd/config.toml"
  wait_for "containerd" 30 ctr --address "$WORK/containerd/containerd.sock" version
  alive_or_die containerd
  local img
  for img in "$WORK"/images/*.tar; do [[ -e $img ]] && import_one "$img"; done

  log "kubelet in $NETNS"
  for s in $(hierarchies); do mkdir -p "$s$CGROUP"; done
  cat >"$WORK/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$pki/ca.crt"}
authorization: {mode: Webhook}
tlsCertFile: "$pki/kubelet-serving.crt"
tlsPrivateKeyFile: "$pki/kubelet-serving.key"
cgroupDriver: cgroupfs
cgroupRoot: "$CGROUP"
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: "unix://$WORK/containerd/containerd.sock"
podLogsDir: "$WORK/pod-logs"
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
registerNode: true
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
EOF
  start kubelet "$NODE_BIN/kubelet" --config "$WORK/kubelet/config.yaml" --kubeconfig "$WORK/kubelet.kubeconfig" \
    --root-dir "$WORK/kubelet" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
  local deadline=$((SECONDS + 90))
  until [[ $(kubectl_ns get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; do
    for s in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet; do alive_or_die "$s"; done
    ((SECONDS < deadline)) || die "node $NODE_NAME not Ready after 90s; last lines of kubelet.log:
$(tail -n 20 "$WORK/logs/kubelet.log")"
    sleep 0.5
  done
  wait_for "the default service account" 60 kubectl_ns -n default get serviceaccount default
  wait_for "the kube-root-ca.crt ConfigMap" 60 kubectl_ns -n default get configmap kube-root-ca.crt
  log "node $NODE_NAME Ready"
}

import_one() {
  ctr --address "$WORK/containerd/containerd.sock" -n k8s.io images import --digests \
    --base-name "localhost/$(basename "$1" .tar)" "$1" >&2
}

import() {
  WORK=$1
  shift
  local t
  for t in "$@"; do import_one "$t"; done
}

# ---------------------------------------------------------------------------------------------
stop_pid() { # name signal-grace-seconds
  local f=$WORK/pids/$1 pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

kill_cgroup_tree() { # dir: kills every process in it and below, then removes it depth-first
  local dir=$1 d pids
  [[ -d $dir ]] || return 0
  for ((i = 0; i < 20; i++)); do
    pids=$(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z $pids ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  [[ ! -d $dir ]] || log "warning: could not remove cgroup $dir"
}

down() {
  WORK=$1
  [[ -d $WORK ]] || return 0
  WORK=$(cd "$WORK" && pwd)
  local NETNS="" CGROUP="" s m t
  # shellcheck disable=SC1091
  [[ -f $WORK/env ]] && source "$WORK/env"
  local sock=$WORK/containerd/containerd.sock ids=() netnses=()
  # Pods first, through the API while kubelet runs, so that CNI and the runtime clean up after
  # them (workloads first, or their controllers make new pods).
  if [[ -n $NETNS && -f $WORK/pids/kubelet && -x ${BIN:-}/kubectl ]] && kill -0 "$(cat "$WORK/pids/kubelet")" 2>/dev/null &&
    kubectl_ns get --raw /readyz >/dev/null 2>&1; then
    kubectl_ns delete daemonsets,deployments,statefulsets,replicasets,jobs --all -A --wait=false >/dev/null 2>&1 || true
    kubectl_ns delete pods --all -A --grace-period=2 --wait=false >/dev/null 2>&1 || true
    for ((t = 0; t < 60; t++)); do
      [[ -z $(ctr --address "$sock" -n k8s.io tasks ls -q 2>/dev/null) ]] && break
      sleep 0.5
    done
  fi
  stop_pid kubelet 5
  # Then whatever is left, by force: remember each sandbox's network namespace and id first.
  if [[ -S $sock ]]; then
    mapfile -t ids < <(ctr --address "$sock" -n k8s.io containers ls -q 2>/dev/null)
    for t in "${ids[@]}"; do
      m=$(ctr --address "$sock" -n k8s.io containers info "$t" 2>/dev/null | grep -o '"path": *"/[a-z/]*run/netns/cni-[0-9a-f-]*"' | grep -o 'cni-[0-9a-f-]*' || true)
      [[ -n $m ]] && netnses+=("$m")
      ctr --address "$sock" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
  fi
  stop_pid containerd 5
  # Leftover shims of this containerd (their command line names its socket).
  for s in $(pgrep -f "containerd-shim-runc-v2 .*-address $WORK/containerd/containerd.sock" || true); do
    kill -KILL "$s" 2>/dev/null || true
  done
  # The pods' cgroups in every hierarchy, deepest first, after killing what is left in them.
  if [[ -n $CGROUP ]]; then
    for s in $(hierarchies); do kill_cgroup_tree "$s$CGROUP"; done
  fi
  # Mounts under WORK (kubelet's root dir on itself, pod volumes, overlay rootfs), deepest first.
  for ((t = 0; t < 3; t++)); do
    m=$(awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 {print $5}' /proc/self/mountinfo | awk '{print length, $0}' | sort -rn | cut -d' ' -f2-)
    [[ -z $m ]] && break
    while read -r s; do umount "$s" 2>/dev/null || umount -l "$s" 2>/dev/null || true; done <<<"$m"
  done
  for s in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$s" 5; done
  # Anything else still running in the namespace (a container's stray child).
  if [[ -n $NETNS && -e /run/netns/$NETNS ]]; then
    for s in $(ip netns pids "$NETNS" 2>/dev/null); do kill -KILL "$s" 2>/dev/null || true; done
  fi
  # What the runtime, libcni and kubelet keep outside WORK.
  for t in "${netnses[@]}"; do ip netns del "$t" 2>/dev/null || true; done
  for t in "${ids[@]}"; do rm -f /var/lib/cni/results/*-"$t"-* 2>/dev/null || true; done
  rmdir /run/containerd/s /run/containerd 2>/dev/null || true
  find /var/log/containers -maxdepth 1 -type l -lname "$WORK/*" -delete 2>/dev/null || true
  if [[ -f $WORK/sysctls ]]; then
    while IFS='=' read -r s m; do sysctl -qw "$s=$m" 2>/dev/null || true; done <"$WORK/sysctls"
  fi
  rm -rf "$WORK"
  log "down"
}

cmd=${1:-}
shift || true
case $cmd in
preflight) preflight ;;
up) [[ $# -eq 3 ]] || die "usage: hack/node-cluster.sh up WORK NETNS NODE_IP"; up "$@" ;;
import) [[ $# -ge 2 ]] || die "usage: hack/node-cluster.sh import WORK TAR..."; import "$@" ;;
down) [[ $# -eq 1 ]] || die "usage: hack/node-cluster.sh down WORK"; down "$1" ;;
*) echo "usage: hack/node-cluster.sh preflight | up WORK NETNS NODE_IP | import WORK TAR... | down WORK" >&2; exit 2 ;;
esac
