// Planner: a one-CIDR change to a large policy becomes one element operation, not a reload.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { compile, type CompileInput } from "../../src/policy/compile.js";
import { planFull, planIncremental } from "../../src/nft/plan.js";
import { render } from "../../src/nft/transaction.js";
import type { EgressPolicy } from "../../src/api/policy.js";
import { EgressPolicy as EgressPolicySchema } from "../../src/api/policy.js";

function policy(cidrs: string[], mode: "Audit" | "Enforce" = "Enforce"): EgressPolicy {
  return EgressPolicySchema.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name: "big" },
    spec: { mode, rules: [{ name: "allow", action: "Allow", to: { cidrs }, ports: [{ protocol: "TCP", port: 443 }] }] },
  });
}

function input(p: EgressPolicy): CompileInput {
  return { policies: [p], node: { name: "n", labels: {} }, addressSets: [], identities: { users: new Map(), groups: new Map() }, fqdns: new Map(), cgroups: new Map(), guard: { apiServers: [], failsafe: [] } };
}

const hosts = (n: number) => Array.from({ length: n }, (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`).filter((_, i) => i % 2 === 0);

describe("planner", () => {
  const base = hosts(1000);
  const before = compile(input(policy(base))).ruleset;
  const existing = {
    chains: new Set(before.chains.map((c) => c.name)),
    sets: new Set(before.sets.map((s) => s.name)),
    counters: new Set(before.counters),
  };

  it("sends only the element diff for a one-CIDR change", () => {
    const after = compile(input(policy([...base.slice(1), "192.0.2.7"]))).ruleset;
    const plan = planIncremental(before, after, existing);
    assert.equal(plan.mode, "incremental");
    assert.equal(plan.changedElements, 2);
    const lines = render(plan.main).trimEnd().split("\n");
    const hostSet = before.sets.find((s) => !s.dynamic)?.name;
    assert.deepEqual(lines.filter((l) => / element /.test(l)), [`delete element inet nftegress ${hostSet} { 10.0.0.0 }`, `add element inet nftegress ${hostSet} { 192.0.2.7 }`]);
    // Only the output chain is rewritten (its jump comment carries the policy's revision), and
    // the accepted flows are emptied in the same transaction, so established flows are re-checked.
    assert.deepEqual(lines.filter((l) => l.startsWith("flush")), ["flush chain inet nftegress output", "flush set inet nftegress flows"]);
    assert.equal(plan.cleanup.length, 0);
  });

  it("rewrites only the chains whose rules changed on a mode switch, and never flushes the accounting sets", () => {
    const after = compile(input(policy(base, "Audit"))).ruleset;
    const text = render(planIncremental(before, after, existing).main);
    assert.doesNotMatch(text, /element/);
    assert.deepEqual(text.match(/flush set .*/g), ["flush set inet nftegress flows"], "only the accepted flows are emptied");
    assert.match(text, /flush chain inet nftegress output\n/);
    assert.doesNotMatch(text, /flush chain inet nftegress guard\n/);
  });

  it("an unchanged ruleset sends nothing: established flows are not re-checked without a change", () => {
    assert.deepEqual(planIncremental(before, compile(input(policy(base))).ruleset, existing).main, []);
  });

  it("a full plan declares, flushes and refills static sets but not dynamic ones, and deletes stale objects afterwards", () => {
    const plan = planFull(before, { chains: new Set([...existing.chains, "pold"]), sets: new Set([...existing.sets, "pold_d4"]), counters: new Set(["pold_denied"]) });
    const text = render(plan.main);
    assert.match(text, /flush set inet nftegress r[0-9a-f]+_4_32\n/);
    assert.doesNotMatch(text, /flush set inet nftegress p[0-9a-f]+_d4\n/);
    assert.match(text, /flush chain inet nftegress pold\n/);
    assert.doesNotMatch(text, /delete/);
    assert.equal(render(plan.cleanup), "delete chain inet nftegress pold\ndelete set inet nftegress pold_d4\ndelete counter inet nftegress pold_denied\n");
  });
});
