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
    assert.deepEqual(rules.map((r) => r.expr), ["ip daddr 10.244.0.0/23 accept", "ip6 daddr fd00:10:244:1::/64 accept"]);
  });

  it("adds nothing without pod CIDRs (standalone servers, CNIs without podCIDR)", () => {
    for (const pods of [undefined, [], ["not-a-cidr"]]) {
      assert.equal(guardRules(pods).filter((r) => r.comment.startsWith("guard:local-pods")).length, 0);
    }
  });
});
