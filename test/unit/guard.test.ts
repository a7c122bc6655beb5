// The guard keeps the node's own pods reachable (kubelet probes) from Node.spec.podCIDRs.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { compile, type CompileInput } from "../../src/policy/compile.js";
import { EgressPolicy } from "../../src/api/policy.js";
import { GUARD_CHAIN } from "../../src/policy/names.js";

const denyAll = EgressPolicy.parse({
  apiVersion: "nftegress.io/v1alpha1",
  kind: "EgressPolicy",
  metadata: { name: "deny-all" },
  spec: { mode: "Enforce", defaultAction: "Deny", rules: [] },
});

function guardRules(localPods?: string[]): { expr: string; comment: string }[] {
  const input: CompileInput = {
    policies: [denyAll],
    node: { name: "n", labels: {} },
    addressSets: [],
    identities: { users: new Map(), groups: new Map() },
    fqdns: new Map(),
    cgroups: new Map(),
    guard: { apiServers: [], failsafe: [], ...(localPods ? { localPods } : {}) },
  };
  return compile(input).ruleset.chains.find((c) => c.name === GUARD_CHAIN)?.rules ?? [];
}

describe("guard: local pods", () => {
  it("accepts the node's pod CIDRs, per family, aggregated, before any policy", () => {
    const rules = guardRules(["10.244.1.0/24", "10.244.0.0/24", "fd00:10:244:1::/64"]).filter((r) => r.comment.startsWith("guard:local-pods"));
    assert.deepEqual(rules.map((r) => r.expr), ["ip daddr 10.244.0.0/23 goto accepted", "ip6 daddr fd00:10:244:1::/64 goto accepted"]);
  });

  it("adds nothing without pod CIDRs (standalone servers, CNIs without podCIDR)", () => {
    for (const pods of [undefined, [], ["not-a-cidr"]]) {
      assert.equal(guardRules(pods).filter((r) => r.comment.startsWith("guard:local-pods")).length, 0);
    }
  });
});

// ---- no entry open to any address (issue 12 item 2) ------------------------------------------

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultFailsafe, guardEntries, formatGuardEntry, type Guard } from "../../src/policy/guard.js";
import { loadFailsafe, loadNodeAddresses, readHost } from "../../src/agent/inputs.js";
import { guardReport } from "../../src/agent/report.js";
import { NodeEgressReportStatus } from "../../src/api/report.js";
import { planFull } from "../../src/nft/plan.js";
import { render } from "../../src/nft/transaction.js";
import { InputError } from "../../src/source/documents.js";

function compiled(guard: Guard) {
  return compile({ policies: [denyAll], node: { name: "n", labels: {} }, addressSets: [], identities: { users: new Map(), groups: new Map() }, fqdns: new Map(), cgroups: new Map(), guard });
}

/** The guard chain's rules as the rendered script has them. */
function renderedGuard(guard: Guard): string[] {
  const script = render(planFull(compiled(guard).ruleset, { chains: new Set(), sets: new Set(), counters: new Set() }).main);
  return script.split("\n").filter((l) => l.startsWith("add rule inet nftegress guard "));
}

/** The fixed first rules, which open no port to any destination except DHCP (found by broadcast). */
const FIXED = /comment "guard:(established|replies|related|loopback|ipv6-nd-mld|dhcpv4|dhcpv6) /;

describe("guard: no entry open to any address", () => {
  const resolvers = ["10.10.0.10", "2001:db8::53"];

  it("the default failsafe, compiled and rendered, has no rule without a destination", () => {
    for (const g of [
      { apiServers: [], failsafe: defaultFailsafe({ resolvers }) },
      { apiServers: [], failsafe: defaultFailsafe({ resolvers: [] }) },
      { apiServers: [{ address: "10.96.0.1", port: 443 }], failsafe: defaultFailsafe({ resolvers, timeServers: ["10.10.0.20"], bgpPeers: ["10.0.0.1"] }), nodes: ["10.0.0.5", "10.0.1.0/24", "fd00::5"] },
    ]) {
      const rules = renderedGuard(g);
      const open = rules.filter((r) => !FIXED.test(r) && !/ (ip|ip6) daddr /.test(r));
      assert.deepEqual(open, [], "every rule after the fixed ones names its destination");
      for (const r of rules.filter((x) => FIXED.test(x))) assert.doesNotMatch(r, /dport (123|179|4789|8472|6081|51820)/);
    }
  });

  it("NTP goes only to the time servers; none configured: no NTP rule, and it says so", () => {
    const none = renderedGuard({ apiServers: [], failsafe: defaultFailsafe({ resolvers }) });
    assert.equal(none.filter((r) => /dport 123/.test(r)).length, 0);
    const e = guardEntries({ apiServers: [], failsafe: defaultFailsafe({ resolvers }), unresolved: ["pool.example.com"] }).find((x) => x.name === "ntp");
    assert.equal(e && formatGuardEntry(e), "ntp: UDP 123 -> nothing (no destination); not resolved: pool.example.com");
    const some = renderedGuard({ apiServers: [], failsafe: defaultFailsafe({ resolvers, timeServers: ["10.10.0.20", "2001:db8::123"] }) }).filter((r) => /dport 123/.test(r));
    assert.deepEqual(some.map((r) => r.replace(/ comment .*/, "")), ["add rule inet nftegress guard ip daddr 10.10.0.20 udp dport 123 goto accepted", "add rule inet nftegress guard ip6 daddr 2001:db8::123 udp dport 123 goto accepted"]);
  });

  it("BGP: no rule at all without peers; only to the peers with them", () => {
    assert.equal(defaultFailsafe({ resolvers }).some((f) => f.name === "bgp"), false);
    const rules = renderedGuard({ apiServers: [], failsafe: defaultFailsafe({ resolvers, bgpPeers: ["10.0.0.1", "10.0.0.2"] }) }).filter((r) => /dport 179/.test(r));
    assert.deepEqual(rules.map((r) => r.replace(/ comment .*/, "")), ["add rule inet nftegress guard ip daddr { 10.0.0.1, 10.0.0.2 } tcp dport 179 goto accepted"]);
  });

  it("to: nodes without node addresses opens nothing and declares no set", () => {
    const c = compiled({ apiServers: [], failsafe: defaultFailsafe({ resolvers }) });
    const rules = c.ruleset.chains.find((x) => x.name === GUARD_CHAIN)?.rules ?? [];
    assert.equal(rules.filter((r) => /4789|6081|51820/.test(r.expr)).length, 0);
    assert.deepEqual(c.ruleset.sets.filter((s) => s.name.startsWith("guard_")), []);
  });

  it("to: nodes with node addresses: a named hash set per family (hosts not aggregated), prefixes in the rule", () => {
    const nodes = ["10.0.0.5", "10.0.0.4", "10.0.0.5", "fd00::5", "10.9.0.0/16", "bogus"];
    const c = compiled({ apiServers: [], failsafe: defaultFailsafe({ resolvers }), nodes });
    const sets = c.ruleset.sets.filter((s) => s.name.startsWith("guard_"));
    assert.deepEqual(sets.map((s) => [s.name, s.keyType, [...s.elements]]), [["guard_nodes4", "ipv4_addr", ["10.0.0.4", "10.0.0.5"]], ["guard_nodes6", "ipv6_addr", ["fd00::5"]]]);
    const vx = (c.ruleset.chains.find((x) => x.name === GUARD_CHAIN)?.rules ?? []).filter((r) => r.comment.startsWith("guard:failsafe:vxlan")).map((r) => r.expr);
    assert.deepEqual(vx, ["ip daddr @guard_nodes4 udp dport { 4789, 8472 } goto accepted", "ip daddr 10.9.0.0/16 udp dport { 4789, 8472 } goto accepted", "ip6 daddr @guard_nodes6 udp dport { 4789, 8472 } goto accepted"]);
    const e = guardEntries({ apiServers: [], failsafe: defaultFailsafe({ resolvers }), nodes: ["10.0.0.4", "10.0.0.5"] }).find((x) => x.name === "wireguard");
    assert.deepEqual(e, { name: "wireguard", protocol: "UDP", ports: ["51820-51821"], destinations: ["10.0.0.4", "10.0.0.5"] });
  });

  it("a failsafe file entry may combine cidrs and to: nodes", () => {
    const dir = mkdtempSync(join(tmpdir(), "nftegress-fs-"));
    try {
      const f = join(dir, "f.yaml");
      writeFileSync(f, "- {name: vxlan, protocol: UDP, ports: [4789], to: nodes, cidrs: [192.0.2.0/24]}\n- {name: ntp, protocol: UDP, ports: [123], cidrs: [10.10.0.20]}\n");
      const fs = loadFailsafe(f);
      const rules = renderedGuard({ apiServers: [], failsafe: fs, nodes: ["10.0.0.7"] }).map((r) => r.replace(/ comment .*/, "").replace("add rule inet nftegress guard ", ""));
      assert.deepEqual(rules.slice(5), ["ip daddr @guard_nodes4 udp dport 4789 goto accepted", "ip daddr 192.0.2.0/24 udp dport 4789 goto accepted", "ip daddr 10.10.0.20 udp dport 123 goto accepted"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a failsafe entry naming no destination, or any other, is refused with one clear line", () => {
    const dir = mkdtempSync(join(tmpdir(), "nftegress-fs-"));
    try {
      const cases: [string, RegExp][] = [
        ["- {name: ntp, protocol: UDP, ports: [123]}\n", /: \[0\]: names no destination: give cidrs, or to: nodes \(an entry is never open to any address; write cidrs: \["0\.0\.0\.0\/0", "::\/0"\] if that is really meant\)$/],
        ["- {name: ntp, protocol: UDP, ports: [123], to: any}\n", /: \[0\]\.to: to: the only value is "nodes"/],
        ["- {name: ntp, protocol: UDP, ports: [123], cidrs: []}\n", /: \[0\]\.cidrs: /],
        ["- {name: ntp, protocol: UDP, ports: [123], cidrs: [10.0.0.1/8]}\n", /: \[0\]\.cidrs\[0\]: /],
        ["- {name: ntp, protocol: UDP, ports: [123], to: nodes, via: x}\n", /unknown field\(s\) "via"/],
      ];
      for (const [text, want] of cases) {
        const f = join(dir, "f.yaml");
        writeFileSync(f, text);
        let msg = "";
        try {
          loadFailsafe(f);
        } catch (e) {
          assert.ok(e instanceof InputError);
          msg = e.message;
        }
        assert.match(msg, want, text);
        assert.ok(msg.startsWith(`${f}: failsafe list: `), msg);
        assert.equal(msg.split("\n").length, 1, msg);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("--node-addresses: a list, or a file of addresses and prefixes; a bad line is one clear error", () => {
    assert.deepEqual(loadNodeAddresses(undefined), []);
    assert.deepEqual(loadNodeAddresses("10.0.0.5, 10.0.1.0/24,fd00::5"), ["10.0.0.5", "10.0.1.0/24", "fd00::5"]);
    const dir = mkdtempSync(join(tmpdir(), "nftegress-na-"));
    try {
      const f = join(dir, "nodes");
      writeFileSync(f, "# the cluster\n10.0.0.5\n10.0.0.6 10.0.0.7 # rack 2\n\nfd00::5\n");
      assert.deepEqual(loadNodeAddresses(f), ["10.0.0.5", "10.0.0.6", "10.0.0.7", "fd00::5"]);
      writeFileSync(f, "10.0.0.5\nnode-b.example\n");
      assert.throws(() => loadNodeAddresses(f), (e: unknown) => e instanceof InputError && e.message === `${f}: line 2: "node-b.example" is not an address or prefix`);
      assert.throws(() => loadNodeAddresses(join(dir, "missing")), (e: unknown) => e instanceof InputError && /^--node-addresses: .*missing: neither a list of addresses nor a readable file/.test(e.message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("readHost: time servers from the configuration, names through the resolver's answers", () => {
    const dir = mkdtempSync(join(tmpdir(), "nftegress-host-"));
    try {
      writeFileSync(join(dir, "resolv.conf"), "nameserver 10.10.0.10\n");
      const etc = join(dir, "root", "etc");
      mkdirSync(etc, { recursive: true });
      writeFileSync(join(etc, "ntp.conf"), "server 10.10.0.20 iburst\npool pool.example.com\n");
      const host = { passwd: "/dev/null", group: "/dev/null", resolvConf: join(dir, "resolv.conf"), timeRoot: join(dir, "root"), nodeAddresses: "10.0.0.9" };
      const g = readHost({ ...host, fqdns: new Map([["pool.example.com", ["192.0.2.7"]]]), clusterNodes: ["10.0.0.8"] }).guard;
      assert.deepEqual(g.failsafe.find((f) => f.name === "ntp")?.cidrs, ["10.10.0.20", "192.0.2.7"]);
      assert.deepEqual(g.nodes, ["10.0.0.8", "10.0.0.9"]);
      assert.deepEqual(readHost(host).guard.unresolved, ["pool.example.com"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the report's guard is compact: names, ports, destination counts and the first five", () => {
    const nodes = Array.from({ length: 3000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1`);
    const r = guardReport({ apiServers: [{ address: "10.96.0.1", port: 443 }], failsafe: defaultFailsafe({ resolvers }), nodes, localPods: ["10.244.1.0/24"] });
    assert.deepEqual(r.map((e) => e.name), ["api-server", "local-pods", "dns-udp", "dns-tcp", "ntp", "metadata", "vxlan", "geneve", "wireguard"]);
    const vx = r.find((e) => e.name === "vxlan");
    assert.deepEqual(vx, { name: "vxlan", protocol: "UDP", ports: ["4789", "8472"], destinations: 3000, addresses: nodes.slice(0, 5) });
    assert.deepEqual(r.find((e) => e.name === "ntp"), { name: "ntp", protocol: "UDP", ports: ["123"], destinations: 0 });
    assert.ok(NodeEgressReportStatus.safeParse({ guard: r, policies: [] }).success);
    assert.ok(JSON.stringify(r).length < 2000, `${JSON.stringify(r).length} bytes`);
  });
});
