// Commit-confirmed, with the recording executor: a change after which the API server cannot
// be reached is rolled back to the last confirmed ruleset and reported RolledBack, and the
// same change is not retried at once. After a restart the last confirmed ruleset is the table
// found at start: restored, never deleted.
import { policyId } from "../../src/policy/names.js";
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Enforcer } from "../../src/agent/enforcer.js";
import { RecordingNftExecutor } from "../../src/nft/fake.js";
import { EgressPolicy } from "../../src/api/policy.js";
import { MemoryRulesetStore } from "../../src/host/confirmed.js";
import type { NftJson } from "../../src/nft/executor.js";
import { textsOf } from "../../src/nft/plan.js";
import type { Ruleset } from "../../src/nft/ruleset.js";

const policy = (allow: string, generation: number, name = "p") =>
  EgressPolicy.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name, generation },
    spec: { mode: "Enforce", rules: [{ name: "r", action: "Allow", to: { cidrs: [allow] } }] },
  });

const host = { passwd: "/dev/null", group: "/dev/null", resolvConf: "/dev/null", failsafeFile: undefined, nodeName: "n", nodeLabels: {} };

describe("commit-confirmed", () => {
  it("rolls back a change that loses the API server, and confirms one that does not", async () => {
    const nft = new RecordingNftExecutor();
    let reachable = true;
    const enforcer = new Enforcer(nft, host, pino({ level: "silent" }), { check: async () => reachable, deadlineMs: 50, intervalMs: 10, retryMs: 60_000 });
    const state = (allow: string, gen: number) => ({ policies: [policy(allow, gen)], addressSets: [], nodeLabels: {}, apiServers: [] });

    const first = await enforcer.enforce(state("192.0.2.10", 1));
    assert.equal(first.ok, true);
    assert.deepEqual(first.results.map((r) => r.result), ["Applied"]);
    const afterFirst = nft.applied.length;

    reachable = false;
    const second = await enforcer.enforce(state("192.0.2.20", 2));
    assert.equal(second.ok, false);
    assert.deepEqual(second.results.map((r) => [r.result, r.generation]), [["RolledBack", 2]]);
    assert.match(second.results[0]?.message ?? "", /API server was unreachable .* previous ruleset was restored/);
    const scripts = nft.applied.slice(afterFirst);
    assert.equal(scripts.length, 2, "the change, then the rollback");
    assert.match(scripts[0] ?? "", /192\.0\.2\.20/);
    assert.match(scripts[1] ?? "", /192\.0\.2\.10/, "the rollback restores the confirmed elements");
    assert.match(await enforcer.metrics.registry.getSingleMetricAsString("nftegress_rollbacks_total"), /nftegress_rollbacks_total 1/);

    const again = await enforcer.enforce(state("192.0.2.20", 2));
    assert.equal(again.results[0]?.result, "RolledBack");
    assert.equal(nft.applied.length, afterFirst + 2, "the rolled-back change is not retried at once");

    reachable = true;
    const third = await enforcer.enforce(state("192.0.2.30", 3));
    assert.deepEqual(third.results.map((r) => r.result), ["Applied"]);
  });

  it("rolls the first apply back to no table when there was none at start", async () => {
    const nft = new RecordingNftExecutor();
    nft.dormant = null;
    const enforcer = new Enforcer(nft, host, pino({ level: "silent" }), { check: async () => false, deadlineMs: 20, intervalMs: 10, retryMs: 60_000 });
    nft.onApply = () => (nft.dormant = false);
    const r = await enforcer.enforce({ policies: [policy("192.0.2.10", 1)], addressSets: [], nodeLabels: {}, apiServers: [] });
    assert.equal(r.results[0]?.result, "RolledBack");
    assert.equal(nft.applied.at(-1), "delete table inet nftegress\n");
  });

  it("after a restart, a first change that fails confirm restores the table found at start, never deletes it", async () => {
    const saved = new MemoryRulesetStore();
    // The previous agent: applies p (allow 192.0.2.10), confirmed, and saves its ruleset.
    const first = new RecordingNftExecutor();
    const before = new Enforcer(first, host, pino({ level: "silent" }), { check: async () => true, deadlineMs: 20, intervalMs: 10, retryMs: 60_000, saved });
    assert.equal((await before.enforce({ policies: [policy("192.0.2.10", 1)], addressSets: [], nodeLabels: {}, apiServers: [] })).ok, true);
    const previous = before.syncer.current;
    assert.ok(previous && saved.text);
    // The kernel as the previous agent left it, counters having counted.
    const nft = new RecordingNftExecutor();
    const kernel = kernelOf(previous, 7, 420);
    nft.table = kernel.listing;
    nft.sets = kernel.sets;
    const log: { msg: string }[] = [];
    const restarted = new Enforcer(nft, host, recordingLog(log), { check: async () => false, deadlineMs: 20, intervalMs: 10, retryMs: 60_000, saved });
    const r = await restarted.enforce({ policies: [policy("192.0.2.20", 2, "q")], addressSets: [], nodeLabels: {}, apiServers: [] });
    assert.deepEqual(r.results.map((x) => x.result), ["RolledBack"]);
    assert.ok(!nft.applied.some((s) => /delete table/.test(s)), "never deletes the table");
    const at = nft.applied.findLastIndex((s) => s.includes(`output jump ${policyId("p")} `));
    const restore = nft.applied[at] ?? "";
    const cleanup = nft.applied.slice(at + 1).join("");
    for (const n of [...previous.chains.map((c) => c.name), ...previous.sets.map((x) => x.name), ...previous.counters]) assert.doesNotMatch(cleanup, new RegExp(` ${n}\\n`), `the follow-up cleanup keeps ${n}`);
    assert.match(restore, /192\.0\.2\.10/, "the restore puts back the elements read from the kernel");
    assert.doesNotMatch(restore, /^add element .*192\.0\.2\.20/m);
    // The guard, established and accepted chains are the same in both rulesets, so they are not
    // rewritten; every other chain is.
    for (const c of previous.chains.filter((x) => !["guard", "established", "accepted"].includes(x.name))) for (const rule of c.rules) assert.ok(restore.includes(rule.expr), `restores ${c.name}: ${rule.expr}`);
    for (const n of previous.counters) assert.match(restore, new RegExp(`add counter inet nftegress ${n} \\{ packets 7 bytes 420 \\}`), "a deleted counter comes back with its value");
    assert.equal(nft.applied.filter((s) => /192\.0\.2\.10/.test(s) && s.includes(`output jump ${policyId("p")} `)).length, 1, "one transaction restores it");
    assert.match(await restarted.metrics.registry.getSingleMetricAsString("nftegress_rollbacks_total"), /nftegress_rollbacks_total 1/);
    assert.ok(!log.some((l) => /cannot be restored/.test(l.msg)));
  });

  it("keeps the change when the table found at start cannot be rebuilt (no saved ruleset, or it differs)", async () => {
    const saved = new MemoryRulesetStore();
    const before = new Enforcer(new RecordingNftExecutor(), host, pino({ level: "silent" }), { check: async () => true, deadlineMs: 20, intervalMs: 10, retryMs: 60_000, saved });
    await before.enforce({ policies: [policy("192.0.2.10", 1)], addressSets: [], nodeLabels: {}, apiServers: [] });
    const previous = before.syncer.current;
    assert.ok(previous);
    for (const store of [undefined, saved]) {
      const nft = new RecordingNftExecutor();
      // A hand-added rule: the kernel no longer matches the saved ruleset.
      const kernel = kernelOf({ ...previous, chains: previous.chains.map((c) => (c.name === "guard" ? { ...c, rules: [...c.rules, { expr: "accept", comment: "by hand" }] } : c)) }, 0, 0);
      nft.table = store ? kernel.listing : kernelOf(previous, 0, 0).listing;
      nft.sets = kernel.sets;
      const log: { msg: string }[] = [];
      const e = new Enforcer(nft, host, recordingLog(log), { check: async () => false, deadlineMs: 20, intervalMs: 10, retryMs: 60_000, ...(store ? { saved: store } : {}) });
      const r = await e.enforce({ policies: [policy("192.0.2.20", 2)], addressSets: [], nodeLabels: {}, apiServers: [] });
      assert.deepEqual(r.results.map((x) => x.result), ["Applied"], "enforced, not rolled back to nothing");
      assert.ok(!nft.applied.some((s) => /delete table/.test(s)), "never deletes the table");
      assert.match(nft.applied.at(-1) ?? "", /192\.0\.2\.20/);
      assert.ok(log.some((l) => /cannot be restored: keeping the change/.test(l.msg)));
    }
  });
});

/** A recording logger: every message with its level. */
function recordingLog(out: { msg: string }[]) {
  return pino({ level: "info" }, { write: (line: string) => void out.push(JSON.parse(line) as { msg: string }) });
}

/** What `nft -j -t list ruleset inet` and `nft -j list set` would print for a ruleset in the
 *  kernel: its objects, rule comments, counters with the given values, static set elements. */
function kernelOf(r: Ruleset, packets: number, bytes: number): { listing: NftJson; sets: Map<string, NftJson> } {
  const t = { family: "inet", table: "nftegress" };
  const items: Record<string, unknown>[] = [{ table: { family: "inet", name: "nftegress", handle: 1, comment: r.comment } }];
  for (const c of r.chains) items.push({ chain: { ...t, name: c.name } });
  for (const n of r.counters) items.push({ counter: { ...t, name: n, packets, bytes } });
  for (const s of r.sets) items.push({ set: { ...t, name: s.name, type: s.keyType } });
  for (const c of r.chains) for (const rule of c.rules) items.push({ rule: { ...t, chain: c.name, comment: rule.comment, expr: [] } });
  const sets = new Map<string, NftJson>();
  for (const s of r.sets) sets.set(s.name, { nftables: [{ set: { ...t, name: s.name, type: s.keyType, elem: [...textsOf(s.elements)] } }] });
  return { listing: { nftables: items }, sets };
}
