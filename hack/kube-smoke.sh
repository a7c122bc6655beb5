#!/usr/bin/env bash
# Smoke test for hack/kube-assets.sh: starts etcd and kube-apiserver on loopback,
# waits for /readyz, runs kubectl against it, and tears everything down on exit.
set -euo pipefail

log() { echo "kube-smoke: $*" >&2; }

assets=$("$(dirname "$0")/kube-assets.sh" | tail -n1)
tmp=$(mktemp -d)
etcd_pid='' apiserver_pid=''

# Stops $1 (a pid): SIGTERM, SIGKILL after $2 seconds, then reaps it.
stop() {
  local pid=$1 grace=$2 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    for f in etcd apiserver; do
      [[ -f "$tmp/$f.log" ]] && { log "last lines of $f.log:"; tail -n 10 "$tmp/$f.log" >&2; }
    done
  fi
  stop "$apiserver_pid" 5
  stop "$etcd_pid" 5
  rm -rf "$tmp"
  log "torn down (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints a loopback TCP port nobody listens on and not in $used.
used=' '
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ "$used" != *" $p "* ]] || continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
etcd_port=$(free_port); used+="$etcd_port "
peer_port=$(free_port); used+="$peer_port "
api_port=$(free_port)

for b in kube-apiserver kube-controller-manager etcd; do
  log "$b: $("$assets/$b" --version 2>&1 | sed -n 1p)"
done

log "starting etcd on 127.0.0.1:$etcd_port"
"$assets/etcd" --name default --data-dir "$tmp/etcd" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" \
  >"$tmp/etcd.log" 2>&1 </dev/null &
etcd_pid=$!

openssl genrsa -out "$tmp/sa.key" 2048 2>/dev/null
token=$(openssl rand -hex 16)
echo "$token,admin,admin,system:masters" >"$tmp/tokens.csv"

log "starting kube-apiserver on 127.0.0.1:$api_port"
"$assets/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --secure-port "$api_port" --bind-address 127.0.0.1 --cert-dir "$tmp/certs" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$tmp/sa.key" \
  --service-account-signing-key-file "$tmp/sa.key" \
  --authorization-mode RBAC --token-auth-file "$tmp/tokens.csv" \
  --service-cluster-ip-range 10.0.0.0/24 \
  >"$tmp/apiserver.log" 2>&1 </dev/null &
apiserver_pid=$!

start=$SECONDS
until curl -fsk -H "Authorization: Bearer $token" "https://127.0.0.1:$api_port/readyz" >/dev/null 2>&1; do
  kill -0 "$etcd_pid" 2>/dev/null || { log "etcd exited"; exit 1; }
  kill -0 "$apiserver_pid" 2>/dev/null || { log "kube-apiserver exited"; exit 1; }
  ((SECONDS - start < 90)) || { log "kube-apiserver not ready after 90s"; exit 1; }
  sleep 0.5
done
log "kube-apiserver ready after $((SECONDS - start))s"

# The self-signed serving cert in --cert-dir carries its CA, so verify TLS with it.
export KUBECONFIG=$tmp/kubeconfig
kubectl=$assets/kubectl
"$kubectl" config set-cluster smoke --server "https://127.0.0.1:$api_port" \
  --certificate-authority "$tmp/certs/apiserver.crt" >/dev/null
"$kubectl" config set-credentials admin --token "$token" >/dev/null
"$kubectl" config set-context smoke --cluster smoke --user admin >/dev/null
"$kubectl" config use-context smoke >/dev/null

"$kubectl" version
"$kubectl" get ns
log "PASS"
