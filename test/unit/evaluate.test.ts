// The evaluator on every fine point of README's Semantics: each case has a twin that would
// pass only if the point were implemented the other way.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EgressPolicy } from "../../src/api/policy.js";
import { EgressAddressSet } from "../../src/api/addressset.js";
import type { CompileInput } from "../../src/policy/compile.js";
import { evaluate, flowProblem, type Flow } from "../../src/policy/evaluate.js";

function pol(name: string, spec: Record<string, unknown>): EgressPolicy {
  return EgressPolicy.parse({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name }, spec });
}

function input(policies: EgressPolicy[], more: Partial<CompileInput> = {}): CompileInput {
  return {
    policies,
    node: { name: "n1", labels: { role: "app" } },
    addressSets: [],
    identities: { users: new Map([["appuser", 4242], ["root", 0]]), groups: new Map([["backup", 34], ["appuser", 4242]]) },
    fqdns: new Map(),
    cgroups: new Map(),
    guard: { apiServers: [], failsafe: [] },
    ...more,
  };
}

const tcp = (to: string, port: number, more: Partial<Flow> = {}): Flow => ({ uid: 0, gid: 0, to, protocol: "TCP", port, ...more });

const allowOnly = (name: string, cidr: string, extra: Record<string, unknown> = {}) => pol(name, { mode: "Enforce", defaultAction: "Deny", rules: [{ name: "only", action: "Allow", to: { cidrs: [cidr] }, ...extra }] });

describe("evaluate: order", () => {
  it("runs policies by priority, lower first, whatever their order in the input", () => {
    const deny = pol("z-deny", { priority: 1, mode: "Enforce", rules: [{ name: "no", action: "Deny", to: { cidrs: ["192.0.2.10"] } }] });
    const allow = pol("a-allow", { priority: 2, mode: "Enforce", rules: [{ name: "yes", action: "Allow", to: { cidrs: ["192.0.2.10"] } }] });
    for (const order of [[deny, allow], [allow, deny]]) {
      const e = evaluate(input(order), tcp("192.0.2.10", 443));
      assert.equal(e.verdict, "Deny");
      assert.deepEqual(e.decidedBy, { kind: "rule", policy: "z-deny", rule: "no", ruleIndex: 0 });
    }
  });

  it("breaks priority ties by the names' byte values (not by input order, numbers or ignoring punctuation)", () => {
    const mk = (name: string, action: "Allow" | "Deny") => pol(name, { priority: 5, mode: "Enforce", rules: [{ name: "r", action, to: { cidrs: ["192.0.2.10"] } }] });
    // '-' (0x2d) sorts before '.' (0x2e): p-b runs first, though p.a sorts first without punctuation.
    let e = evaluate(input([mk("p.a", "Allow"), mk("p-b", "Deny")]), tcp("192.0.2.10", 443));
    assert.equal(e.decidedBy.policy, "p-b");
    // "p10" < "p9" by bytes (a numeric collation would run p9 first).
    e = evaluate(input([mk("p9", "Allow"), mk("p10", "Deny")]), tcp("192.0.2.10", 443));
    assert.equal(e.decidedBy.policy, "p10");
  });

  it("within a policy, the first matching rule decides", () => {
    const p = pol("p", { mode: "Enforce", rules: [{ name: "a", action: "Allow", ports: [{ protocol: "TCP", port: 443 }] }, { name: "b", action: "Deny", to: { cidrs: ["192.0.2.0/24"] } }] });
    assert.deepEqual(evaluate(input([p]), tcp("192.0.2.10", 443)).decidedBy, { kind: "rule", policy: "p", rule: "a", ruleIndex: 0 });
    assert.deepEqual(evaluate(input([p]), tcp("192.0.2.10", 80)).decidedBy, { kind: "rule", policy: "p", rule: "b", ruleIndex: 1 });
  });

  it("ignores policies that do not select the node, and policies refused on it", () => {
    const other = pol("other", { nodeSelector: { matchLabels: { role: "db" } }, mode: "Enforce", rules: [{ name: "no", action: "Deny" }] });
    const refused = pol("refused", { mode: "Enforce", defaultAction: "Deny", rules: [{ name: "ghost", action: "Allow", users: ["nosuchuser"] }] });
    const e = evaluate(input([other, refused]), tcp("192.0.2.10", 443));
    assert.equal(e.verdict, "Allow");
    assert.deepEqual(e.decidedBy, { kind: "default", policy: null, rule: null, ruleIndex: null });
    assert.deepEqual(e.path[0], { step: "refused", policy: "refused", message: 'spec.rules[0]: unknown user "nosuchuser" on this node' });
  });
});

describe("evaluate: the guard", () => {
  const guard = {
    apiServers: [{ address: "10.96.0.1", port: 443 }],
    localPods: ["10.244.1.0/24"],
    failsafe: [
      { name: "dns-udp", protocol: "UDP" as const, ports: [53], cidrs: ["192.0.2.53"] },
      { name: "wireguard", protocol: "UDP" as const, ports: ["51820-51821"], to: "nodes" as const },
    ],
    nodes: ["192.0.2.0/28"],
  };
  const denyAll = pol("deny-all", { mode: "Enforce", defaultAction: "Deny", rules: [{ name: "no", action: "Deny" }] });

  it("accepts its entries before any policy, by entry name", () => {
    const cases: [Flow, string][] = [
      [{ uid: 0, gid: 0, to: "192.0.2.53", protocol: "UDP", port: 53 }, "dns-udp"],
      [{ uid: 0, gid: 0, to: "192.0.2.5", protocol: "UDP", port: 51821 }, "wireguard"],
      [tcp("10.96.0.1", 443), "api-server"],
      [{ uid: 0, gid: 0, to: "10.244.1.7", protocol: "ICMP" }, "local-pods"],
      [tcp("127.0.0.1", 8080), "loopback"],
      [{ uid: 0, gid: 0, to: "255.255.255.255", protocol: "UDP", port: 67, sourcePort: 68 }, "dhcpv4"],
    ];
    for (const [flow, entry] of cases) {
      const e = evaluate(input([denyAll], { guard }), flow);
      assert.equal(e.verdict, "Allow", entry);
      assert.deepEqual(e.decidedBy, { kind: "guard", policy: null, rule: entry, ruleIndex: null });
      assert.deepEqual(e.path, [{ step: "guard", entry, action: "Allow" }]);
    }
  });

  it("opens only the protocol, ports and destinations an entry names", () => {
    for (const flow of [
      { uid: 0, gid: 0, to: "192.0.2.53", protocol: "TCP", port: 53 },
      { uid: 0, gid: 0, to: "192.0.2.54", protocol: "UDP", port: 53 },
      { uid: 0, gid: 0, to: "192.0.2.5", protocol: "UDP", port: 51822 },
      { uid: 0, gid: 0, to: "192.0.2.16", protocol: "UDP", port: 51820 },
      { uid: 0, gid: 0, to: "10.96.0.1", protocol: "TCP", port: 6443 },
      { uid: 0, gid: 0, to: "255.255.255.255", protocol: "UDP", port: 67 },
    ] satisfies Flow[]) {
      const e = evaluate(input([denyAll], { guard }), flow);
      assert.equal(e.verdict, "Deny", JSON.stringify(flow));
      assert.equal(e.decidedBy.kind, "rule");
    }
  });
});

describe("evaluate: Audit and the default", () => {
  it("an Audit match never stops the default deny of a later Enforce policy", () => {
    const audit = pol("audit", { priority: 1, mode: "Audit", rules: [{ name: "ok", action: "Allow", to: { cidrs: ["192.0.2.20"] } }] });
    const enforce = allowOnly("enforce", "192.0.2.10");
    const e = evaluate(input([audit, enforce]), tcp("192.0.2.20", 443));
    assert.equal(e.verdict, "Deny");
    assert.deepEqual(e.decidedBy, { kind: "default", policy: "enforce", rule: null, ruleIndex: null });
    assert.deepEqual(e.audit, []);
    assert.deepEqual(e.path[0], { step: "rule", policy: "audit", mode: "Audit", rule: "ok", ruleIndex: 0, action: "Allow", original: false, effect: "next-policy" });
  });

  it("an Audit Deny (rule or default) counts as would-deny and the next policy decides", () => {
    const auditRule = pol("a1", { priority: 1, mode: "Audit", defaultAction: "Allow", rules: [{ name: "no-web", action: "Deny", ports: [{ protocol: "TCP", port: 443 }] }] });
    const auditDefault = pol("a2", { priority: 2, mode: "Audit", defaultAction: "Deny", rules: [{ name: "other", action: "Allow", to: { cidrs: ["198.51.100.0/24"] } }] });
    const enforce = allowOnly("enforce", "192.0.2.10");
    const e = evaluate(input([auditDefault, enforce, auditRule]), tcp("192.0.2.10", 443));
    assert.equal(e.verdict, "Allow");
    assert.deepEqual(e.decidedBy, { kind: "rule", policy: "enforce", rule: "only", ruleIndex: 0 });
    assert.deepEqual(e.audit, [{ policy: "a1", rule: "no-web" }, { policy: "a2", rule: null }]);
    // An Audit Allow returns: the Audit policy's own default is not counted.
    const allowed = evaluate(input([auditDefault]), tcp("198.51.100.40", 443));
    assert.deepEqual(allowed.audit, []);
    assert.equal(allowed.verdict, "Allow");
  });

  it("an Audit policy's defaultAction Deny never denies", () => {
    const e = evaluate(input([pol("a", { mode: "Audit", defaultAction: "Deny" })]), tcp("192.0.2.10", 443));
    assert.equal(e.verdict, "Allow");
    assert.deepEqual(e.decidedBy, { kind: "default", policy: null, rule: null, ruleIndex: null });
  });

  it("a default denial is attributed to, and answered as, the first default-deny Enforce policy", () => {
    const allowDefault = pol("p0", { priority: 0, mode: "Enforce", defaultAction: "Allow", denyResponse: "Reject", rules: [] });
    const drop = pol("p1", { priority: 1, mode: "Enforce", defaultAction: "Deny", denyResponse: "Drop", rules: [] });
    const reject = pol("p2", { priority: 2, mode: "Enforce", defaultAction: "Deny", denyResponse: "Reject", rules: [] });
    let e = evaluate(input([reject, drop, allowDefault]), tcp("192.0.2.10", 443));
    assert.equal(e.verdict, "Deny");
    assert.equal(e.denyResponse, "Drop");
    assert.deepEqual(e.decidedBy, { kind: "default", policy: "p1", rule: null, ruleIndex: null });
    e = evaluate(input([reject, allowDefault]), tcp("192.0.2.10", 443));
    assert.equal(e.denyResponse, "Reject");
    assert.equal(e.decidedBy.policy, "p2");
    // A Deny rule answers with its own policy's denyResponse.
    e = evaluate(input([pol("r", { mode: "Enforce", denyResponse: "Reject", rules: [{ name: "x", action: "Deny" }] }), drop]), tcp("192.0.2.10", 443));
    assert.equal(e.denyResponse, "Reject");
  });
});

describe("evaluate: conditions", () => {
  it("empty users, groups, cgroups and ports lists are no condition", () => {
    const p = allowOnly("p", "192.0.2.10", { users: [], groups: [], cgroups: [], ports: [] });
    const e = evaluate(input([p]), { uid: 4242, gid: 4242, to: "192.0.2.10", protocol: "UDP", port: 9 });
    assert.equal(e.verdict, "Allow");
    assert.equal(e.decidedBy.kind, "rule");
  });

  it("an empty to (no CIDRs, an empty address set, unresolved FQDNs only) matches nothing", () => {
    const empty = EgressAddressSet.parse({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressAddressSet", metadata: { name: "empty" }, spec: { cidrs: [] } });
    for (const to of [{}, { cidrs: [] }, { addressSets: ["empty"] }, { fqdns: ["unresolved.example"] }]) {
      const p = pol("p", { mode: "Enforce", defaultAction: "Allow", rules: [{ name: "x", action: "Deny", to }] });
      const e = evaluate(input([p], { addressSets: [empty] }), tcp("192.0.2.10", 443));
      assert.equal(e.verdict, "Allow", JSON.stringify(to));
      assert.equal(e.decidedBy.kind, "default", JSON.stringify(to));
    }
    // Without to: every destination; resolved FQDNs and set members match.
    const set = EgressAddressSet.parse({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressAddressSet", metadata: { name: "chunk-1", labels: { "nftegress.io/set": "mirrors" } }, spec: { cidrs: ["198.51.100.0/24"] } });
    for (const [to, addr] of [[undefined, "203.0.113.5"], [{ fqdns: ["api.example"] }, "192.0.2.10"], [{ addressSets: ["mirrors"] }, "198.51.100.41"]] as const) {
      const p = pol("p", { mode: "Enforce", defaultAction: "Allow", rules: [{ name: "x", action: "Deny", ...(to ? { to } : {}) }] });
      const e = evaluate(input([p], { addressSets: [set], fqdns: new Map([["api.example", ["192.0.2.10"]]]) }), tcp(addr, 443));
      assert.equal(e.verdict, "Deny", JSON.stringify(to));
    }
  });

  it("ICMP does not match ICMPv6, nor ICMPv6 ICMP", () => {
    const v4 = pol("p", { mode: "Enforce", rules: [{ name: "ping", action: "Allow", ports: [{ protocol: "ICMP" }] }], defaultAction: "Deny" });
    assert.equal(evaluate(input([v4]), { uid: 0, gid: 0, to: "192.0.2.10", protocol: "ICMP" }).verdict, "Allow");
    assert.equal(evaluate(input([v4]), { uid: 0, gid: 0, to: "2001:db8:1::10", protocol: "ICMPv6" }).verdict, "Deny");
    const v6 = pol("p", { mode: "Enforce", rules: [{ name: "ping", action: "Allow", ports: [{ protocol: "ICMPv6" }] }], defaultAction: "Deny" });
    assert.equal(evaluate(input([v6]), { uid: 0, gid: 0, to: "192.0.2.10", protocol: "ICMP" }).verdict, "Deny");
    assert.equal(evaluate(input([v6]), { uid: 0, gid: 0, to: "2001:db8:1::10", protocol: "ICMPv6" }).verdict, "Allow");
    assert.match(flowProblem({ uid: 0, gid: 0, to: "2001:db8:1::10", protocol: "ICMP" }) ?? "", /use ICMPv6/);
  });

  it("groups match the socket's group, users its owner, by name or number", () => {
    const p = allowOnly("p", "192.0.2.10", { users: ["appuser", "1001"], groups: ["backup"] });
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 443, { uid: 4242, gid: 34 })).verdict, "Allow");
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 443, { uid: 1001, gid: 34 })).verdict, "Allow");
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 443, { uid: 4242, gid: 4242 })).verdict, "Deny", "the user's own group is not backup");
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 443, { uid: 0, gid: 34 })).verdict, "Deny");
  });

  it("ports: ranges inclusive, a protocol without port is every port, other protocols never", () => {
    const p = allowOnly("p", "192.0.2.0/24", { ports: [{ protocol: "TCP", port: 8000, endPort: 8080 }, { protocol: "UDP" }] });
    for (const [proto, port, v] of [["TCP", 8000, "Allow"], ["TCP", 8080, "Allow"], ["TCP", 8081, "Deny"], ["TCP", 7999, "Deny"], ["UDP", 1, "Allow"], ["SCTP", 8000, "Deny"]] as const) {
      assert.equal(evaluate(input([p]), { uid: 0, gid: 0, to: "192.0.2.10", protocol: proto, port }).verdict, v, `${proto} ${port}`);
    }
  });

  it("destinations: overlapping prefixes of both families, the family must match", () => {
    const p = allowOnly("p", "2001:db8:1::/48", {});
    assert.equal(evaluate(input([p]), tcp("2001:db8:1::10", 443)).verdict, "Allow");
    assert.equal(evaluate(input([p]), tcp("2001:db8:2::10", 443)).verdict, "Deny");
    const all4 = allowOnly("p", "0.0.0.0/0", {});
    assert.equal(evaluate(input([all4]), tcp("203.0.113.5", 443)).verdict, "Allow");
    assert.equal(evaluate(input([all4]), tcp("2001:db8:2::10", 443)).verdict, "Deny");
  });

  it("cgroups: the socket's cgroup or one below it, only cgroups that exist on the node", () => {
    const p = allowOnly("p", "192.0.2.10", { cgroups: ["system.slice/apt-daily.service", "/system.slice/gone.service"] });
    const cgroups = new Map([["system.slice/apt-daily.service", "system.slice/apt-daily.service"]]);
    const at = (cgroup?: string) => evaluate(input([p], { cgroups }), tcp("192.0.2.10", 443, cgroup === undefined ? {} : { cgroup })).verdict;
    assert.equal(at("system.slice/apt-daily.service"), "Allow");
    assert.equal(at("/system.slice/apt-daily.service/sub"), "Allow");
    assert.equal(at("system.slice/apt-daily.service2"), "Deny");
    assert.equal(at("system.slice"), "Deny");
    assert.equal(at("system.slice/gone.service"), "Deny", "a cgroup that does not exist matches nothing");
    assert.equal(at(undefined), "Deny");
  });

  it("a DNATed flow matches on its original destination and port, together", () => {
    const p = allowOnly("svc", "192.0.2.99", { ports: [{ protocol: "TCP", port: 443 }] });
    const e = evaluate(input([p]), tcp("192.0.2.10", 8443, { original: { to: "192.0.2.99", port: 443 } }));
    assert.equal(e.verdict, "Allow");
    assert.equal(e.path[0]?.step === "rule" && e.path[0].original, true);
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 8443)).verdict, "Deny", "without DNAT, the translated destination only");
    assert.equal(evaluate(input([p]), tcp("192.0.2.10", 443, { original: { to: "192.0.2.99", port: 8443 } })).verdict, "Deny", "original address with the translated port is no match");
    // The translated destination still matches too.
    const endpoint = allowOnly("ep", "192.0.2.10", { ports: [{ protocol: "TCP", port: 8443 }] });
    const t = evaluate(input([endpoint]), tcp("192.0.2.10", 8443, { original: { to: "192.0.2.99", port: 443 } }));
    assert.equal(t.verdict, "Allow");
    assert.equal(t.path[0]?.step === "rule" && t.path[0].original, false);
  });
});
