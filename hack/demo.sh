#!/usr/bin/env bash
# make demo: the standalone engine on the embedded example, no cluster needed.
# Creates a throwaway "node" and "world" network namespace pair, applies examples/ in Audit
# and then in Enforce mode, shows allowed and blocked connections and the kernel's counters,
# and deletes everything it created (also on Ctrl-C). Needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_NS=nfte-demo-node
WORLD_NS=nfte-demo-world
CLI=(node dist/src/cmd/cli.js)
work=""
listener=""

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  trap - EXIT INT TERM
  [ -n "$listener" ] && kill "$listener" 2>/dev/null || true
  ip netns del "$NODE_NS" 2>/dev/null || true
  ip netns del "$WORLD_NS" 2>/dev/null || true
  [ -n "$work" ] && rm -rf "$work"
}
interrupted() { echo; echo "demo interrupted: cleaning up"; cleanup; exit 130; }
trap cleanup EXIT
trap interrupted INT TERM

if [ "$(id -u)" -ne 0 ]; then echo "make demo needs root (it creates network namespaces)" >&2; exit 1; fi
# Leftovers of an earlier run that was killed hard.
ip netns del "$NODE_NS" 2>/dev/null || true
ip netns del "$WORLD_NS" 2>/dev/null || true

bold "1. A node and a world, joined by a veth pair (documentation addresses only)"
work="$(mktemp -d)"
ip netns add "$NODE_NS"
ip netns add "$WORLD_NS"
ip link add veth-n netns "$NODE_NS" type veth peer name veth-w netns "$WORLD_NS"
ip -n "$NODE_NS" link set lo up
ip -n "$WORLD_NS" link set lo up
ip -n "$NODE_NS" addr add 192.0.2.1/24 dev veth-n
ip -n "$NODE_NS" addr add 2001:db8::1/64 dev veth-n nodad
ip -n "$WORLD_NS" addr add 192.0.2.254/24 dev veth-w
ip -n "$WORLD_NS" addr add 2001:db8::2/64 dev veth-w nodad
ip -n "$NODE_NS" link set veth-n up
ip -n "$WORLD_NS" link set veth-w up
v4=(192.0.2.10 192.0.2.20 192.0.2.30 192.0.2.53 192.0.2.123 198.51.100.40 198.51.100.66 203.0.113.5)
v6=(2001:db8:1::10 2001:db8:2::10 2001:db8:3::10)
for a in "${v4[@]}"; do ip -n "$WORLD_NS" addr add "$a/32" dev lo; done
for a in "${v6[@]}"; do ip -n "$WORLD_NS" addr add "$a/128" dev lo; done
ip -n "$NODE_NS" route add 198.51.100.0/24 via 192.0.2.254
ip -n "$NODE_NS" route add 203.0.113.0/24 via 192.0.2.254
for r in 2001:db8:1::/48 2001:db8:2::/48 2001:db8:3::/48; do ip -n "$NODE_NS" -6 route add "$r" via 2001:db8::2; done
addrs="$(IFS=,; echo "${v4[*]},${v6[*]}")"
ip netns exec "$WORLD_NS" node dist/test/support/listener.js --tcp=22,53,443,9418 --udp=53,123 "--addrs=$addrs" >/dev/null &
listener=$!
echo "node: 192.0.2.1, 2001:db8::1   world: ${v4[*]} ${v6[*]}"
printf 'appuser:x:4242:4242:demo application user:/nonexistent:/usr/sbin/nologin\n' >"$work/passwd"
sleep 0.5

probe() { # probe LABEL tcp|udp ADDR PORT [UID]
  local label="$1" proto="$2" addr="$3" port="$4" uid="${5:-}" as=() script
  [ -n "$uid" ] && as=(setpriv "--reuid=$uid" "--regid=$uid" --clear-groups)
  if [ "$proto" = tcp ]; then
    script="exec 3<>/dev/tcp/$addr/$port && read -n 1 -t 2 c <&3"
  else
    script="exec 3<>/dev/udp/$addr/$port && echo hi >&3 && read -n 1 -t 1 c <&3"
  fi
  local start end result
  start=$(date +%s%N)
  if ip netns exec "$NODE_NS" "${as[@]}" timeout 1.5 bash -c "$script" 2>/dev/null; then result="connected"; else result="BLOCKED"; fi
  end=$(date +%s%N)
  printf '  %-44s %-5s %-16s %-5s -> %-9s (%d ms)\n' "$label" "$proto" "$addr" "$port" "$result" $(((end - start) / 1000000))
}

probes() {
  probe "DNS to the resolver" udp 192.0.2.53 53
  probe "DNS to another server" udp 192.0.2.10 53
  probe "NTP to its server" udp 192.0.2.123 123
  probe "HTTPS to an allowed host" tcp 192.0.2.10 443
  probe "git to an allowed host" tcp 192.0.2.20 9418
  probe "HTTPS to the corp-mirrors address set" tcp 203.0.113.5 443
  probe "HTTPS over IPv6 to an allowed host" tcp 2001:db8:1::10 443
  probe "HTTPS to an unknown host" tcp 192.0.2.30 443
  probe "SSH to an allowed host (port not allowed)" tcp 192.0.2.10 22
  probe "HTTPS over IPv6 to an unknown host" tcp 2001:db8:3::10 443
  probe "API host as root" tcp 198.51.100.40 443
  probe "API host as appuser (uid 4242)" tcp 198.51.100.40 443 4242
  probe "other host as appuser" tcp 198.51.100.66 443 4242
}

opts=(--netns "$NODE_NS" --passwd "$work/passwd" --resolv-conf /dev/null)

bold "2. The example policy (examples/baseline.yaml), rendered for this node"
"${CLI[@]}" render -f examples/ "${opts[@]:2}" | grep -E '^add rule inet nftegress p[0-9a-f]+ ' | head -8
echo "  ... ($("${CLI[@]}" render -f examples/ "${opts[@]:2}" | wc -l) lines in all: nftegress render -f examples/)"

bold "3. Audit mode: nothing is blocked, what would be denied is counted"
cp -r examples "$work/policies"
"${CLI[@]}" apply -f "$work/policies" "${opts[@]}" --state-dir "$work/state"
probes
"${CLI[@]}" status --netns "$NODE_NS" --passwd "$work/passwd" --state-dir "$work/state"

bold "4. Enforce mode: the same policy with mode: Enforce"
sed -i 's/^  mode: Audit /  mode: Enforce/' "$work/policies/baseline.yaml"
grep -q '^  mode: Enforce' "$work/policies/baseline.yaml"
"${CLI[@]}" apply -f "$work/policies" "${opts[@]}" --state-dir "$work/state"
probes
"${CLI[@]}" status --netns "$NODE_NS" --passwd "$work/passwd" --state-dir "$work/state"

bold "5. Bad input is refused with one line, and nothing changes"
printf 'apiVersion: nftegress.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: typo}\nspec:\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["10.0.0.300/32"]}}\n' >"$work/policies/typo.yaml"
"${CLI[@]}" apply -f "$work/policies" "${opts[@]}" --state-dir "$work/state" || echo "  (exit code $?; the enforced ruleset is unchanged)"
rm "$work/policies/typo.yaml"

bold "6. Cleanup: the table is removed, the namespaces deleted"
"${CLI[@]}" cleanup --netns "$NODE_NS"
cleanup
echo "demo done"
