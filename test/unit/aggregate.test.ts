// Status aggregation: node reports folded into EgressPolicy.status, kstatus conditions, Events.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EgressPolicy as EgressPolicySchema, EgressPolicyStatus as EgressPolicyStatusSchema } from "../../src/api/policy.js";
import type { EgressPolicy, EgressPolicyStatus } from "../../src/api/policy.js";
import type { NodeEgressReport, PolicyReport } from "../../src/api/report.js";
import { aggregate, aggregateAll, mergeDestinations, mergeUsers, nodeState, type Destination, type NodeInfo } from "../../src/controller/aggregate.js";
import { Interner, compactReport } from "../../src/controller/compact.js";
import { computeStatus, statusEqual, timestamp, type StatusInput, type StatusResult } from "../../src/controller/status.js";

const T0 = new Date("2025-03-01T12:00:00.123Z");
const T1 = new Date("2025-03-01T12:01:00.000Z");
const T2 = new Date("2025-03-01T12:02:00.000Z");
const T3 = new Date("2025-03-01T12:03:00.000Z");
const S0 = "2025-03-01T12:00:00Z";
const S1 = "2025-03-01T12:01:00Z";
const S2 = "2025-03-01T12:02:00Z";

const APP = ["a", "b", "c", "d", "e"];
const NODES: NodeInfo[] = [...APP.map((name) => ({ name, labels: { role: "app" } })), { name: "db", labels: { role: "db" } }];

interface PolicyOptions {
  generation?: number;
  selector?: Record<string, string>;
  addressSets?: string[];
  status?: EgressPolicyStatus;
}

function policy(o: PolicyOptions = {}): EgressPolicy {
  const p = EgressPolicySchema.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name: "web", generation: o.generation ?? 4 },
    spec: {
      nodeSelector: { matchLabels: o.selector ?? { role: "app" } },
      mode: "Enforce",
      rules: [
        { name: "dns", action: "Allow", to: { cidrs: ["10.10.0.10/32"] }, ports: [{ protocol: "UDP", port: 53 }] },
        { name: "https", action: "Allow", to: { addressSets: o.addressSets ?? ["mirrors"] }, ports: [{ protocol: "TCP", port: 443 }] },
      ],
    },
  });
  return o.status ? { ...p, status: o.status } : p;
}

function entry(over: Partial<PolicyReport> = {}): PolicyReport {
  return {
    name: "web",
    generation: 4,
    mode: "Enforce",
    result: "Applied",
    denied: { packets: 0, bytes: 0 },
    wouldDeny: { packets: 0, bytes: 0 },
    ...over,
  };
}

function report(node: string, ...policies: PolicyReport[]): NodeEgressReport {
  return { apiVersion: "nftegress.io/v1alpha1", kind: "NodeEgressReport", metadata: { name: node }, status: { policies } };
}

const applied = (nodes: string[], over: Partial<PolicyReport> = {}) => nodes.map((n) => report(n, entry(over)));

function run(o: PolicyOptions, reports: NodeEgressReport[], now: Date, extra: Partial<StatusInput> = {}): StatusResult {
  return computeStatus({ policy: policy(o), nodes: NODES, reports, addressSetNames: new Set(["mirrors"]), now, ...extra });
}

const cond = (s: EgressPolicyStatus, type: string) => s.conditions?.find((c) => c.type === type);

describe("node states", () => {
  it("classifies one report entry against the current generation", () => {
    assert.equal(nodeState(undefined, 4), "pending");
    assert.equal(nodeState(entry(), 4), "applied");
    assert.equal(nodeState(entry({ generation: 3 }), 4), "pending");
    assert.equal(nodeState(entry({ generation: 5 }), 4), "pending");
    assert.equal(nodeState(entry({ result: "Failed" }), 4), "failed");
    assert.equal(nodeState(entry({ result: "RolledBack" }), 4), "failed");
    assert.equal(nodeState(entry({ result: "Failed", generation: 3 }), 4), "pending");
    assert.equal(nodeState(entry({ result: "Suspended" }), 4), "suspended");
    assert.equal(nodeState(entry({ result: "Suspended", generation: 2 }), 4), "suspended");
  });
});

describe("computeStatus: rollout", () => {
  it("nodes converge from pending to applied; Ready, Reconciling and Events follow", () => {
    // a, b, c applied generation 4; d still on 3; e has no report yet.
    const first = run({}, [...applied(["a", "b", "c"]), report("d", entry({ generation: 3 }))], T0);
    assert.deepEqual(first.status, {
      observedGeneration: 4,
      conditions: [
        { type: "Ready", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "Progressing", message: "3 of 5 selected nodes applied generation 4 (2 pending)" },
        { type: "Stalled", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NoFailures", message: "no unknown address sets and no node failures" },
        { type: "Reconciling", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "Progressing", message: "3 of 5 selected nodes applied generation 4 (2 pending)" },
      ],
      nodes: { selected: 5, applied: 3, failed: 0, pending: 2, suspended: 0 },
      failedNodes: [],
      denied: { packets: 0, bytes: 0 },
      wouldDeny: { packets: 0, bytes: 0 },
      topDeniedDestinations: [],
      deniedByUser: [],
      lastChangeTime: S0,
      deniedSinceLastChange: 0,
      deniedBaseline: 0,
    });
    assert.deepEqual(first.events, []);

    // d catches up: still progressing; the message changes, the transition time does not.
    const second = run({ status: first.status }, applied(["a", "b", "c", "d"]), T1);
    assert.deepEqual(cond(second.status, "Ready"), {
      type: "Ready", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "Progressing", message: "4 of 5 selected nodes applied generation 4 (1 pending)",
    });
    assert.equal(cond(second.status, "Reconciling")?.lastTransitionTime, S0);
    assert.deepEqual(second.events, []);

    // e applies: Ready, not reconciling, one RolledOut Event.
    const third = run({ status: second.status }, applied(APP), T2);
    assert.deepEqual(third.status.conditions, [
      { type: "Ready", status: "True", observedGeneration: 4, lastTransitionTime: S2, reason: "Applied", message: "generation 4 applied on all 5 selected nodes" },
      { type: "Stalled", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NoFailures", message: "no unknown address sets and no node failures" },
      { type: "Reconciling", status: "False", observedGeneration: 4, lastTransitionTime: S2, reason: "NoNodesPending", message: "5 of 5 selected nodes applied generation 4" },
    ]);
    assert.deepEqual(third.status.nodes, { selected: 5, applied: 5, failed: 0, pending: 0, suspended: 0 });
    assert.equal(third.status.lastChangeTime, S0);
    assert.deepEqual(third.events, [{ type: "Normal", reason: "RolledOut", message: "generation 4 applied on all 5 selected nodes" }]);

    // Nothing changed: an equal status (no write) and no Events.
    const again = run({ status: third.status }, applied(APP), T3);
    assert.ok(statusEqual(third.status, again.status));
    assert.deepEqual(again.status, third.status);
    assert.deepEqual(again.events, []);

    // A new generation: lastChangeTime moves, Ready drops, and the rollout Event comes again.
    const gen5 = run({ generation: 5, status: again.status }, applied(APP), T3);
    assert.equal(gen5.status.observedGeneration, 5);
    assert.equal(gen5.status.lastChangeTime, timestamp(T3));
    assert.deepEqual(gen5.status.nodes, { selected: 5, applied: 0, failed: 0, pending: 5, suspended: 0 });
    assert.deepEqual(cond(gen5.status, "Ready"), {
      type: "Ready", status: "False", observedGeneration: 5, lastTransitionTime: timestamp(T3), reason: "Progressing", message: "0 of 5 selected nodes applied generation 5 (5 pending)",
    });
    assert.deepEqual(cond(gen5.status, "Stalled")?.observedGeneration, 5);
    assert.deepEqual(gen5.events, []);
    const gen5done = run({ generation: 5, status: gen5.status }, applied(APP, { generation: 5 }), T3);
    assert.deepEqual(gen5done.events, [{ type: "Normal", reason: "RolledOut", message: "generation 5 applied on all 5 selected nodes" }]);
  });

  it("a failure on one node stalls the policy, names the node, and raises Events only on change", () => {
    const reports = [
      ...applied(["a", "b"]),
      report("c", entry({ result: "Failed", message: "Error: Could not process rule: No such file or directory" })),
      report("d", entry({ result: "RolledBack", message: "API server unreachable after apply" })),
    ];
    const r = run({}, reports, T0);
    const stalledMessage = "2 of 5 selected nodes failed generation 4; first: c: Failed: Error: Could not process rule: No such file or directory";
    assert.deepEqual(r.status.nodes, { selected: 5, applied: 2, failed: 2, pending: 1, suspended: 0 });
    assert.deepEqual(r.status.failedNodes, [
      { node: "c", message: "Failed: Error: Could not process rule: No such file or directory" },
      { node: "d", message: "RolledBack: API server unreachable after apply" },
    ]);
    // Stalled comes before Reconciling: kstatus takes the first True one, so this is Failed.
    assert.deepEqual(r.status.conditions, [
      { type: "Ready", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NodeFailures", message: stalledMessage },
      { type: "Stalled", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "NodeFailures", message: stalledMessage },
      { type: "Reconciling", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "Progressing", message: "2 of 5 selected nodes applied generation 4 (1 pending, 2 failed)" },
    ]);
    assert.deepEqual(r.events, [{ type: "Warning", reason: "NodeFailures", message: stalledMessage }]);

    // Same input again: no Event.
    const same = run({ status: r.status }, reports, T1);
    assert.deepEqual(same.events, []);
    assert.ok(statusEqual(r.status, same.status));

    // e fails too: still stalled (transition time kept), one more NodeFailures Event.
    const more = run({ status: same.status }, [...reports, report("e", entry({ result: "Failed" }))], T1);
    assert.deepEqual(cond(more.status, "Stalled"), {
      type: "Stalled", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "NodeFailures",
      message: "3 of 5 selected nodes failed generation 4; first: c: Failed: Error: Could not process rule: No such file or directory",
    });
    assert.deepEqual(more.status.failedNodes?.[2], { node: "e", message: "Failed: no message" });
    assert.deepEqual(more.events, [
      { type: "Warning", reason: "NodeFailures", message: "3 of 5 selected nodes failed generation 4; first: c: Failed: Error: Could not process rule: No such file or directory" },
    ]);

    // The nodes recover.
    const fixed = run({ status: more.status }, applied(APP), T2);
    assert.deepEqual(cond(fixed.status, "Stalled"), {
      type: "Stalled", status: "False", observedGeneration: 4, lastTransitionTime: S2, reason: "NoFailures", message: "no unknown address sets and no node failures",
    });
    assert.deepEqual(fixed.events, [
      { type: "Normal", reason: "Recovered", message: "no longer stalled: 5 of 5 selected nodes applied generation 4" },
      { type: "Normal", reason: "RolledOut", message: "generation 4 applied on all 5 selected nodes" },
    ]);
  });

  it("a failure in a new generation on the same node is a new Stalled Event", () => {
    const gen4 = run({}, [...applied(["a", "b", "c", "d"]), report("e", entry({ result: "Failed", message: "boom" }))], T0);
    const gen5 = run({ generation: 5, status: gen4.status }, [...applied(["a", "b", "c", "d"], { generation: 5 }), report("e", entry({ generation: 5, result: "Failed", message: "boom" }))], T1);
    assert.deepEqual(gen5.events, [{ type: "Warning", reason: "NodeFailures", message: "1 of 5 selected nodes failed generation 5; first: e: Failed: boom" }]);
    assert.equal(cond(gen5.status, "Stalled")?.lastTransitionTime, S0);
  });

  it("a failure of an older generation, while the node has not reported the current one, is pending", () => {
    const r = run({}, [...applied(["a", "b", "c", "d"]), report("e", entry({ generation: 3, result: "Failed", message: "old" }))], T0);
    assert.deepEqual(r.status.nodes, { selected: 5, applied: 4, failed: 0, pending: 1, suspended: 0 });
    assert.deepEqual(r.status.failedNodes, []);
    assert.equal(cond(r.status, "Stalled")?.status, "False");
    assert.equal(cond(r.status, "Reconciling")?.status, "True");
    assert.deepEqual(r.events, []);
  });

  it("lists the first 10 failed nodes by name and shortens long messages", () => {
    const names = Array.from({ length: 12 }, (_, i) => `n${String(11 - i).padStart(2, "0")}`);
    const nodes = names.map((name) => ({ name, labels: { role: "app" } }));
    const long = "x".repeat(300);
    const r = computeStatus({
      policy: policy(),
      nodes,
      reports: names.map((n) => report(n, entry({ result: "Failed", message: long }))),
      addressSetNames: new Set(["mirrors"]),
      now: T0,
    });
    assert.deepEqual(r.status.nodes, { selected: 12, applied: 0, failed: 12, pending: 0, suspended: 0 });
    assert.deepEqual(r.status.failedNodes?.map((f) => f.node), ["n00", "n01", "n02", "n03", "n04", "n05", "n06", "n07", "n08", "n09"]);
    assert.equal(r.status.failedNodes?.[0]?.message, `Failed: ${"x".repeat(245)}...`);
    assert.equal(r.status.failedNodes?.[0]?.message.length, 256);
  });

  it("ignores reports of nodes that are not selected or no longer exist, and other policies' entries", () => {
    const counters = { denied: { packets: 1000, bytes: 9000 }, wouldDeny: { packets: 7, bytes: 70 } };
    const r = run({}, [
      ...APP.map((n) => report(n, entry({ name: "other", result: "Failed", ...counters }), entry({ denied: { packets: 10, bytes: 600 }, wouldDeny: { packets: 1, bytes: 60 } }))),
      report("db", entry({ result: "Failed", message: "not ours", ...counters, topDeniedDestinations: [{ address: "192.0.2.1", port: 22, protocol: "tcp", packets: 999 }] })),
      report("gone", entry({ result: "Failed", message: "deleted node", ...counters })),
    ], T0);
    assert.deepEqual(r.status.nodes, { selected: 5, applied: 5, failed: 0, pending: 0, suspended: 0 });
    assert.deepEqual(r.status.failedNodes, []);
    assert.deepEqual(r.status.denied, { packets: 50, bytes: 3000 });
    assert.deepEqual(r.status.wouldDeny, { packets: 5, bytes: 300 });
    assert.deepEqual(r.status.topDeniedDestinations, []);
    assert.equal(cond(r.status, "Ready")?.reason, "Applied");
  });

  it("sums counters of selected nodes whatever their state", () => {
    const r = run({}, [
      report("a", entry({ denied: { packets: 3, bytes: 180 }, wouldDeny: { packets: 0, bytes: 0 } })),
      report("b", entry({ generation: 3, denied: { packets: 4, bytes: 240 }, wouldDeny: { packets: 2, bytes: 100 } })),
      report("c", entry({ result: "Failed", denied: { packets: 5, bytes: 300 }, wouldDeny: { packets: 0, bytes: 0 } })),
    ], T0);
    assert.deepEqual(r.status.denied, { packets: 12, bytes: 720 });
    assert.deepEqual(r.status.wouldDeny, { packets: 2, bytes: 100 });
  });
});

describe("computeStatus: no node selected", () => {
  it("is Ready with reason NoNodesSelected, says so plainly, and warns once", () => {
    const r = run({ selector: { role: "nothing" } }, applied(APP), T0);
    const message = "spec.nodeSelector selects none of the 6 nodes: this policy is enforced nowhere";
    assert.deepEqual(r.status.nodes, { selected: 0, applied: 0, failed: 0, pending: 0, suspended: 0 });
    assert.deepEqual(r.status.conditions, [
      { type: "Ready", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "NoNodesSelected", message },
      { type: "Stalled", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NoFailures", message: "no unknown address sets and no node failures" },
      { type: "Reconciling", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NoNodesPending", message },
    ]);
    assert.deepEqual(r.events, [{ type: "Warning", reason: "NoNodesSelected", message }]);

    const again = run({ selector: { role: "nothing" }, status: r.status }, applied(APP), T1);
    assert.deepEqual(again.events, []);
    assert.ok(statusEqual(r.status, again.status));

    // A new generation that still selects nothing warns again.
    const gen5 = run({ generation: 5, selector: { role: "nothing" }, status: again.status }, applied(APP), T1);
    assert.deepEqual(gen5.events, [{ type: "Warning", reason: "NoNodesSelected", message }]);

    // A rolled-out policy whose nodes lose their label warns too.
    const live = run({}, applied(APP), T0);
    const relabeled = computeStatus({ policy: policy({ status: live.status }), nodes: APP.map((name) => ({ name, labels: {} })), reports: applied(APP), addressSetNames: new Set(["mirrors"]), now: T1 });
    assert.deepEqual(relabeled.events, [{ type: "Warning", reason: "NoNodesSelected", message: "spec.nodeSelector selects none of the 5 nodes: this policy is enforced nowhere" }]);
    assert.equal(cond(relabeled.status, "Ready")?.lastTransitionTime, S0);
  });
});

describe("computeStatus: suspended nodes", () => {
  it("counts suspended nodes apart, stays Ready with reason NodesSuspended, and warns when more appear", () => {
    const reports = [...applied(["a", "b", "c", "d"]), report("e", entry({ generation: 3, result: "Suspended" }))];
    const r = run({}, reports, T0);
    const progress = "4 of 5 selected nodes applied generation 4 (1 suspended)";
    assert.deepEqual(r.status.nodes, { selected: 5, applied: 4, failed: 0, pending: 0, suspended: 1 });
    assert.deepEqual(cond(r.status, "Ready"), {
      type: "Ready", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "NodesSuspended",
      message: `${progress}; suspended by the node annotation nftegress.io/suspend, the policy is not enforced on: e`,
    });
    assert.equal(cond(r.status, "Reconciling")?.status, "False");
    assert.equal(cond(r.status, "Stalled")?.status, "False");
    assert.deepEqual(r.events, [
      { type: "Warning", reason: "NodesSuspended", message: "1 selected node suspended by the node annotation nftegress.io/suspend, the policy is not enforced on: e" },
      { type: "Normal", reason: "RolledOut", message: progress },
    ]);
    assert.deepEqual(run({ status: r.status }, reports, T1).events, []);

    // A node of a rolled-out policy gets suspended: a warning, not a rollout.
    const live = run({}, applied(APP), T0);
    const later = run({ status: live.status }, reports, T1);
    assert.deepEqual(later.events, [
      { type: "Warning", reason: "NodesSuspended", message: "1 selected node suspended by the node annotation nftegress.io/suspend, the policy is not enforced on: e" },
    ]);
  });
});

describe("computeStatus: semantic validation", () => {
  it("an unknown address set stalls the policy with the rule and set named", () => {
    const r = run({ addressSets: ["mirrors", "corp-mirrors", "corp-mirrors"] }, applied(APP), T0);
    const message = 'rule "https" references unknown EgressAddressSet "corp-mirrors"';
    assert.deepEqual(r.status.conditions, [
      { type: "Ready", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "UnknownAddressSet", message },
      { type: "Stalled", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "UnknownAddressSet", message },
      { type: "Reconciling", status: "False", observedGeneration: 4, lastTransitionTime: S0, reason: "NoNodesPending", message: "5 of 5 selected nodes applied generation 4" },
    ]);
    assert.deepEqual(r.events, [{ type: "Warning", reason: "UnknownAddressSet", message }]);

    // Node failures on top: reason stays the root cause, the message carries both, and the
    // appearing failures get their own Event.
    const both = run({ addressSets: ["corp-mirrors"], status: r.status }, [...applied(["a", "b", "c", "d"]), report("e", entry({ result: "Failed", message: "unknown set" }))], T1);
    assert.deepEqual(cond(both.status, "Stalled"), {
      type: "Stalled", status: "True", observedGeneration: 4, lastTransitionTime: S0, reason: "UnknownAddressSet",
      message: `${message}; 1 of 5 selected nodes failed generation 4; first: e: Failed: unknown set`,
    });
    assert.deepEqual(both.events, [{ type: "Warning", reason: "NodeFailures", message: "1 of 5 selected nodes failed generation 4; first: e: Failed: unknown set" }]);

    // The set is created: recovered and rolled out.
    const fixed = computeStatus({ policy: policy({ addressSets: ["corp-mirrors"], status: both.status }), nodes: NODES, reports: applied(APP), addressSetNames: new Set(["corp-mirrors"]), now: T2 });
    assert.equal(cond(fixed.status, "Ready")?.status, "True");
    assert.deepEqual(fixed.events.map((e) => e.reason), ["Recovered", "RolledOut"]);
  });

  it("lists at most 5 unknown references", () => {
    const sets = ["s1", "s2", "s3", "s4", "s5", "s6", "s7"];
    const r = run({ addressSets: sets }, applied(APP), T0, { addressSetNames: new Set() });
    assert.equal(
      cond(r.status, "Stalled")?.message,
      'rule "https" references unknown EgressAddressSet "s1"; rule "https" references unknown EgressAddressSet "s2"; rule "https" references unknown EgressAddressSet "s3"; rule "https" references unknown EgressAddressSet "s4"; rule "https" references unknown EgressAddressSet "s5"; and 2 more',
    );
  });
});

describe("top-K merge", () => {
  it("sums the same destination across nodes, counts nodes, breaks ties by address, port, protocol", () => {
    const a: Destination[] = [
      { address: "203.0.113.5", port: 443, protocol: "tcp", packets: 50 },
      { address: "198.51.100.1", port: 53, protocol: "udp", packets: 20 },
      { address: "198.51.100.1", port: 53, protocol: "tcp", packets: 20 },
      { address: "2001:db8::1", protocol: "icmpv6", packets: 5 },
    ];
    const b: Destination[] = [
      { address: "203.0.113.5", port: 443, protocol: "tcp", packets: 30, nodes: 99 },
      { address: "198.51.100.1", port: 53, protocol: "udp", packets: 20 },
      { address: "192.0.2.9", port: 80, protocol: "tcp", packets: 40 },
      { address: "192.0.2.9", protocol: "tcp", packets: 40 },
      { address: "198.51.100.1", port: 53, protocol: "tcp", packets: 20 },
    ];
    // Ties at 40 packets: by address, then no port before a port, then protocol.
    assert.deepEqual(mergeDestinations([a, b]), [
      { address: "203.0.113.5", port: 443, protocol: "tcp", packets: 80, nodes: 2 },
      { address: "192.0.2.9", protocol: "tcp", packets: 40, nodes: 1 },
      { address: "192.0.2.9", port: 80, protocol: "tcp", packets: 40, nodes: 1 },
      { address: "198.51.100.1", port: 53, protocol: "tcp", packets: 40, nodes: 2 },
      { address: "198.51.100.1", port: 53, protocol: "udp", packets: 40, nodes: 2 },
      { address: "2001:db8::1", protocol: "icmpv6", packets: 5, nodes: 1 },
    ]);
    assert.deepEqual(mergeDestinations([b, a]), mergeDestinations([a, b]));
  });

  it("keeps the top 10 of more than 10, deterministically, and counts a node once per key", () => {
    const perNode: Destination[][] = [
      Array.from({ length: 8 }, (_, i) => ({ address: `192.0.2.${i + 1}`, port: 443, protocol: "tcp", packets: 10 })),
      Array.from({ length: 8 }, (_, i) => ({ address: `198.51.100.${i + 1}`, port: 443, protocol: "tcp", packets: 10 + i })),
      [
        { address: "192.0.2.8", port: 443, protocol: "tcp", packets: 1 },
        { address: "192.0.2.8", port: 443, protocol: "tcp", packets: 1 },
      ],
    ];
    const top = mergeDestinations(perNode);
    assert.deepEqual(top, [
      { address: "198.51.100.8", port: 443, protocol: "tcp", packets: 17, nodes: 1 },
      { address: "198.51.100.7", port: 443, protocol: "tcp", packets: 16, nodes: 1 },
      { address: "198.51.100.6", port: 443, protocol: "tcp", packets: 15, nodes: 1 },
      { address: "198.51.100.5", port: 443, protocol: "tcp", packets: 14, nodes: 1 },
      { address: "198.51.100.4", port: 443, protocol: "tcp", packets: 13, nodes: 1 },
      { address: "192.0.2.8", port: 443, protocol: "tcp", packets: 12, nodes: 2 },
      { address: "198.51.100.3", port: 443, protocol: "tcp", packets: 12, nodes: 1 },
      { address: "198.51.100.2", port: 443, protocol: "tcp", packets: 11, nodes: 1 },
      { address: "192.0.2.1", port: 443, protocol: "tcp", packets: 10, nodes: 1 },
      { address: "192.0.2.2", port: 443, protocol: "tcp", packets: 10, nodes: 1 },
    ]);
    assert.deepEqual(mergeDestinations([...perNode].reverse()), top);
  });

  it("merges denials by (uid, user), top 10, ties by uid then user", () => {
    const perNode = [
      [
        { uid: 1000, user: "alice", packets: 5 },
        { uid: 0, user: "root", packets: 5 },
        ...Array.from({ length: 9 }, (_, i) => ({ uid: 2000 + i, packets: 1 })),
      ],
      [
        { uid: 1000, user: "alice", packets: 3 },
        { uid: 1000, user: "bob", packets: 8 },
        { uid: 1000, packets: 8 },
      ],
    ];
    assert.deepEqual(mergeUsers(perNode), [
      { uid: 1000, packets: 8 },
      { uid: 1000, user: "alice", packets: 8 },
      { uid: 1000, user: "bob", packets: 8 },
      { uid: 0, user: "root", packets: 5 },
      { uid: 2000, packets: 1 },
      { uid: 2001, packets: 1 },
      { uid: 2002, packets: 1 },
      { uid: 2003, packets: 1 },
      { uid: 2004, packets: 1 },
      { uid: 2005, packets: 1 },
    ]);
  });

  it("fills the status lists from the selected nodes' reports", () => {
    const r = run({}, [
      report("a", entry({ topDeniedDestinations: [{ address: "192.0.2.7", port: 443, protocol: "tcp", packets: 6 }], deniedByUser: [{ uid: 33, user: "www-data", packets: 6 }] })),
      report("b", entry({ topDeniedDestinations: [{ address: "192.0.2.7", port: 443, protocol: "tcp", packets: 4 }], deniedByUser: [{ uid: 33, user: "www-data", packets: 4 }] })),
      report("db", entry({ topDeniedDestinations: [{ address: "192.0.2.7", port: 443, protocol: "tcp", packets: 100 }] })),
    ], T0);
    assert.deepEqual(r.status.topDeniedDestinations, [{ address: "192.0.2.7", port: 443, protocol: "tcp", packets: 10, nodes: 2 }]);
    assert.deepEqual(r.status.deniedByUser, [{ uid: 33, user: "www-data", packets: 10 }]);
  });
});

describe("computeStatus: denied since last change", () => {
  const denied = (packets: number[]) => packets.map((p, i) => report(APP[i] ?? "a", entry({ denied: { packets: p, bytes: p * 100 } })));

  it("counts increases since the generation changed, never goes negative, re-baselines on a drop", () => {
    const s1 = run({}, denied([60, 40]), T0).status;
    assert.deepEqual([s1.lastChangeTime, s1.deniedSinceLastChange, s1.deniedBaseline], [S0, 0, 100]);

    const s2 = run({ status: s1 }, denied([90, 60]), T1).status;
    assert.deepEqual([s2.lastChangeTime, s2.deniedSinceLastChange, s2.deniedBaseline], [S0, 50, 150]);

    // Node a rebooted: its counter restarted. The sum drops from 150 to 65.
    const s3 = run({ status: s2 }, denied([5, 60]), T2).status;
    assert.deepEqual([s3.denied?.packets, s3.deniedSinceLastChange, s3.deniedBaseline], [65, 50, 65]);

    const s4 = run({ status: s3 }, denied([15, 60]), T2).status;
    assert.deepEqual([s4.deniedSinceLastChange, s4.deniedBaseline], [60, 75]);

    // Node b leaves the selection: another drop, still not negative.
    const s5 = computeStatus({ policy: policy({ status: s4 }), nodes: NODES.filter((n) => n.name !== "b"), reports: denied([15, 60]), addressSetNames: new Set(["mirrors"]), now: T2 }).status;
    assert.deepEqual([s5.denied?.packets, s5.deniedSinceLastChange, s5.deniedBaseline], [15, 60, 15]);

    // A policy change starts over.
    const s6 = run({ generation: 5, status: s5 }, denied([20, 60]), T3).status;
    assert.deepEqual([s6.lastChangeTime, s6.deniedSinceLastChange, s6.deniedBaseline], [timestamp(T3), 0, 80]);
  });

  it("keeps counting from a status written before the baseline existed", () => {
    const s1 = run({}, denied([10]), T0).status;
    const legacy: EgressPolicyStatus = { ...s1, deniedSinceLastChange: 7, deniedBaseline: undefined };
    const s2 = run({ status: legacy }, denied([30]), T1).status;
    assert.deepEqual([s2.deniedSinceLastChange, s2.deniedBaseline], [7, 30]);
  });
});

describe("aggregateAll", () => {
  it("equals aggregate() of every policy at its own generation", () => {
    const mk = (name: string, generation: number, nodeSelector: object) =>
      EgressPolicySchema.parse({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name, generation }, spec: { nodeSelector, rules: [] } });
    const policies = [
      mk("web", 4, { matchLabels: { role: "app" } }),
      mk("all", 2, {}),
      mk("not-db", 7, { matchExpressions: [{ key: "role", operator: "NotIn", values: ["db"] }] }),
      mk("nowhere", 1, { matchLabels: { role: "none" } }),
    ];
    const dest = (address: string, packets: number, port?: number): Destination => ({ address, protocol: "tcp", packets, ...(port ? { port } : {}) });
    const nodes: NodeInfo[] = [...NODES, { name: "x", labels: {} }, { name: "c", labels: { role: "db" } }].reverse();
    const reports = [
      report("a", entry({ denied: { packets: 3, bytes: 9 }, topDeniedDestinations: [dest("192.0.2.1", 3, 443), dest("192.0.2.1", 1, 443)] }), entry({ name: "all", generation: 2 }), entry({ name: "web", generation: 1 })),
      report("b", entry({ generation: 3 }), entry({ name: "all", generation: 2, result: "Failed", message: "boom" }), entry({ name: "not-db", generation: 7, result: "Suspended" })),
      report("c", entry({ result: "RolledBack", deniedByUser: [{ uid: 5, user: "u", packets: 2 }, { uid: 5, packets: 1 }] }), entry({ name: "not-db", generation: 7, wouldDeny: { packets: 4, bytes: 8 }, topDeniedDestinations: [dest("192.0.2.1", 2, 443), dest("192.0.2.1", 2)] })),
      report("a", entry({ generation: 99 })),
      report("db", entry({ name: "all", generation: 2 }), entry({ name: "not-db", generation: 7 })),
      report("gone", entry({ name: "all", generation: 2 })),
    ];
    const all = aggregateAll(policies, nodes, reports);
    assert.deepEqual([...all.keys()], policies.map((p) => p.metadata.name));
    for (const p of policies) assert.deepEqual(all.get(p.metadata.name), aggregate(p, nodes, reports, p.metadata.generation ?? 1), p.metadata.name);
    assert.deepEqual(all.get("all")?.counts, { selected: 7, applied: 2, failed: 1, pending: 4, suspended: 0 });
    // The controller keeps reports compact: the same aggregates come out of them.
    const strings = new Interner(3);
    const compact = reports.map((r) => compactReport({ ...r, metadata: { ...r.metadata, managedFields: [{ manager: "x" }] }, status: { rulesetHash: "h", lastApplyTime: S0, policies: r.status?.policies ?? [] } }, strings));
    assert.deepEqual(aggregateAll(policies, nodes, compact), all);
    assert.deepEqual(compact[1], report("b", entry({ generation: 3 }), entry({ name: "all", generation: 2, result: "Failed", message: "boom" }), entry({ name: "not-db", generation: 7, result: "Suspended" })));
    assert.ok(strings.size <= 3, "the interner stays bounded");
  });
});

describe("statusEqual", () => {
  it("is true for a recomputation with no input change, also after an API round trip", () => {
    const reports = [...applied(["a", "b"], { topDeniedDestinations: [{ address: "2001:db8::1", protocol: "icmpv6", packets: 2 }] }), report("c", entry({ result: "Failed" }))];
    const first = run({}, reports, T0).status;
    const again = run({ status: first }, reports, T3).status;
    assert.ok(statusEqual(first, again));
    const stored = EgressPolicyStatusSchema.parse(JSON.parse(JSON.stringify(again)));
    assert.ok(statusEqual(first, stored));
    assert.ok(statusEqual(stored, first));
  });

  it("is false when anything differs, timestamps included; undefined properties count as absent", () => {
    const s = run({}, applied(APP), T0).status;
    assert.ok(!statusEqual(s, { ...s, nodes: { selected: 5, applied: 5, failed: 0, pending: 0, suspended: 1 } }));
    assert.ok(!statusEqual(s, { ...s, lastChangeTime: S1 }));
    assert.ok(!statusEqual(s, { ...s, conditions: s.conditions?.slice(1) }));
    assert.ok(!statusEqual(s, undefined));
    assert.ok(!statusEqual(s, { ...s, deniedBaseline: undefined }));
    assert.ok(statusEqual(s, { ...s, failedNodes: [], deniedByUser: [] }));
    assert.ok(statusEqual({ observedGeneration: 1, lastChangeTime: undefined }, { observedGeneration: 1 }));
    assert.ok(statusEqual(undefined, undefined));
  });

  it("formats times like metav1.Time", () => {
    assert.equal(timestamp(T0), S0);
  });
});
