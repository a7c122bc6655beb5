// Isolation: the bisection core with a recording, failing check; the Enforcer's wiring with a
// fake executor that refuses one policy's rules like the kernel; the last good version kept
// per object (uid), pruned when the policy is gone, never inherited by a recreated one; and
// objects the agent's schema refuses reported Failed with their last good version kept.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { isolate } from "../../src/agent/isolate.js";
import { Enforcer, type DesiredState } from "../../src/agent/enforcer.js";
import { EgressPolicy } from "../../src/api/policy.js";
import { NftTransactionError } from "../../src/nft/errors.js";
import { RecordingNftExecutor } from "../../src/nft/fake.js";

/** A check that refuses any subset holding one of `bad`, recording every subset it saw. */
function refusing(bad: ReadonlySet<number>) {
  const seen: number[][] = [];
  const check = async (subset: readonly number[]): Promise<string | null> => {
    seen.push([...subset]);
    const hit = subset.find((i) => bad.has(i));
    return hit === undefined ? null : `Error: Value too large (item ${hit})`;
  };
  return { seen, check };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe("isolate (bisection core)", () => {
  it("finds one faulty item among n in at most 2*ceil(log2 n)+3 checks, at every position", async () => {
    for (const n of [1, 2, 3, 5, 8, 13, 64, 100]) {
      for (let bad = 0; bad < n; bad++) {
        const { seen, check } = refusing(new Set([bad]));
        const r = await isolate(range(n), check);
        assert.ok(r, `n=${n} bad=${bad}`);
        assert.deepEqual([...r.faulty.keys()], [bad]);
        assert.equal(r.faulty.get(bad), `Error: Value too large (item ${bad})`, "its own message");
        assert.equal(r.checks, seen.length);
        const bound = 2 * Math.ceil(Math.log2(n)) + 3;
        assert.ok(r.checks <= bound, `n=${n} bad=${bad}: ${r.checks} checks > ${bound}`);
      }
    }
  });

  it("finds several faulty items, each with its own message", async () => {
    const bad = new Set([3, 17, 18, 39]);
    const { check } = refusing(bad);
    const r = await isolate(range(40), check);
    assert.ok(r);
    assert.deepEqual([...r.faulty.keys()].sort((a, b) => a - b), [...bad]);
    for (const b of bad) assert.equal(r.faulty.get(b), `Error: Value too large (item ${b})`);
    assert.ok(r.checks < 40, `fewer checks than one per item: ${r.checks}`);
  });

  it("every item faulty: all found", async () => {
    const { check } = refusing(new Set(range(6)));
    const r = await isolate(range(6), check);
    assert.deepEqual([...(r?.faulty.keys() ?? [])].sort(), range(6));
  });

  it("cannot attribute: the whole set accepted alone, the empty set refused, or items that fail only together", async () => {
    assert.equal(await isolate(range(8), async () => null), null, "accepted on its own: the kernel's state, not a policy");
    assert.equal(await isolate(range(8), async () => "Error: out of memory"), null, "even the empty set is refused");
    const together = async (s: readonly number[]) => (s.includes(2) && s.includes(6) ? "Error: conflict" : null);
    assert.equal(await isolate(range(8), together), null, "2 and 6 fail only together");
  });
});

const MARK = "203.0.113.66";

/** Refuses, like the kernel, any script carrying MARK; records what it checked and applied. */
class RefusingExecutor extends RecordingNftExecutor {
  checks = 0;
  override async apply(script: string): Promise<void> {
    if (script.includes(MARK)) throw new NftTransactionError("nft rejected the transaction: Value too large (at: meta skuid 4294967296)", "", 1);
    return super.apply(script);
  }
  override async check(script: string): Promise<void> {
    this.checks++;
    if (script.includes(MARK)) throw new NftTransactionError("nft --check rejected the ruleset: Value too large (at: meta skuid 4294967296)", "", 1);
    return super.check(script);
  }
}

const policy = (name: string, cidrs: string[], meta: { generation?: number; uid?: string } = {}, rule: Record<string, unknown> = {}) =>
  EgressPolicy.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name, generation: meta.generation ?? 1, ...(meta.uid ? { uid: meta.uid } : {}) },
    spec: { mode: "Enforce", defaultAction: "Allow", rules: [{ name: "r", action: "Deny", to: { cidrs }, ...rule }] },
  });

const host = { passwd: "/dev/null", group: "/dev/null", resolvConf: "/dev/null", failsafeFile: undefined, nodeName: "n", nodeLabels: {} };
const state = (policies: EgressPolicy[], extra: Partial<DesiredState> = {}): DesiredState => ({ policies, addressSets: [], nodeLabels: {}, apiServers: [], ...extra });
const enforcerWith = (nft: RecordingNftExecutor) => new Enforcer(nft, host, pino({ level: "silent" }));
const metric = async (e: Enforcer, name: string) => (await e.metrics.registry.getSingleMetricAsString(name)).split("\n");

describe("Enforcer: a policy the kernel refuses fails alone", () => {
  it("applies the others and reports that one Failed with nft's message (never added when it never applied)", async () => {
    const nft = new RefusingExecutor();
    const e = enforcerWith(nft);
    const names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    const ps = names.map((n, i) => policy(`p-${n}`, [n === "f" ? MARK : `198.51.100.${i + 1}`]));
    const r = await e.enforce(state(ps, { origins: new Map([["EgressPolicy/p-f", { file: "/etc/nftegress/f.yaml", index: 1 }]]) }));
    assert.equal(r.ok, true);
    const byName = new Map(r.results.map((x) => [x.name, x]));
    assert.equal(byName.get("p-f")?.result, "Failed");
    assert.equal(byName.get("p-f")?.message, "/etc/nftegress/f.yaml: document 2: nft refused this policy: Value too large (at: meta skuid 4294967296); not applied");
    for (const n of names.filter((x) => x !== "f")) assert.equal(byName.get(`p-${n}`)?.result, "Applied", n);
    const last = nft.applied.at(-1) ?? "";
    assert.ok(!last.includes(MARK), "the refused policy is not in the applied transaction");
    for (let i = 0; i < 8; i++) if (i !== 5) assert.ok(last.includes(`198.51.100.${i + 1}`), `policy ${i} applied`);
    assert.ok(nft.checks <= 2 * 3 + 3, `${nft.checks} checks for 8 policies`);
    assert.ok((await metric(e, "nftegress_apply_total")).includes('nftegress_apply_total{result="partial"} 1'));
  });

  it("keeps the last good version of the policy at fault: that is what the kernel enforces", async () => {
    const nft = new RefusingExecutor();
    const e = enforcerWith(nft);
    const other = policy("other", ["192.0.2.1"]);
    const first = await e.enforce(state([policy("p", ["198.51.100.7"], { uid: "u1" }), other]));
    assert.deepEqual(first.results.map((x) => x.result), ["Applied", "Applied"]);
    const r = await e.enforce(state([policy("p", ["198.51.100.7", MARK], { uid: "u1", generation: 2 }), policy("other", ["192.0.2.1", "192.0.2.2"], { generation: 2 })]));
    const p = r.results.find((x) => x.name === "p");
    assert.equal(p?.result, "Failed");
    assert.equal(p?.generation, 2);
    assert.match(p?.message ?? "", /nft refused this policy: Value too large.*; generation 1 stays enforced$/);
    assert.equal(r.results.find((x) => x.name === "other")?.result, "Applied");
    const last = nft.applied.at(-1) ?? "";
    assert.ok(last.includes("192.0.2.2"), "the other policy's change applied");
    assert.ok(!last.includes(MARK));
    // What the kernel now holds: p at generation 1 (its deny of 198.51.100.7), other at 2.
    assert.deepEqual(r.applied.map((c) => [c.name, c.generation]).sort(), [["other", 2], ["p", 1]]);
  });

  it("a refusal no policy explains fails the whole apply and changes nothing", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    nft.failNext = "Error: Could not process rule: Cannot allocate memory";
    const r = await e.enforce(state([policy("p", ["198.51.100.7"])]));
    assert.equal(r.ok, false);
    assert.equal(r.results[0]?.result, "Failed");
    assert.match(r.results[0]?.message ?? "", /Cannot allocate memory/);
    assert.equal(nft.applied.length, 0);
  });
});

describe("Enforcer: last good versions", () => {
  it("a deleted and recreated policy (new uid) never inherits the old spec", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    await e.enforce(state([policy("p", ["198.51.100.7"], { uid: "u1" })]));
    assert.ok((nft.applied.at(-1) ?? "").includes("198.51.100.7"));
    // Recreated under the same name, with a spec that fails to compile on this node.
    const r = await e.enforce(state([policy("p", ["198.51.100.8"], { uid: "u2" }, { users: ["nosuchuser"] })]));
    assert.equal(r.results[0]?.result, "Failed");
    assert.match(r.results[0]?.message ?? "", /unknown user "nosuchuser"/);
    assert.equal(r.applied.length, 0, "not enforced");
    assert.equal(e.syncer.current?.sets.filter((s) => !s.dynamic).length, 0, "the old spec's destinations are gone");
  });

  it("the same object (same uid) that fails to compile keeps its last good version", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    await e.enforce(state([policy("p", ["198.51.100.7"], { uid: "u1" })]));
    const r = await e.enforce(state([policy("p", ["198.51.100.8"], { uid: "u1", generation: 2 }, { users: ["nosuchuser"] })]));
    assert.equal(r.results[0]?.result, "Failed");
    assert.deepEqual(r.applied.map((c) => [c.name, c.generation]), [["p", 1]]);
  });

  it("files (no uid): the last good version is pruned when the policy leaves the directory", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    await e.enforce(state([policy("p", ["198.51.100.7"])]));
    await e.enforce(state([]));
    const r = await e.enforce(state([policy("p", ["198.51.100.8"], {}, { users: ["nosuchuser"] })]));
    assert.equal(r.results[0]?.result, "Failed");
    assert.equal(r.applied.length, 0, "a policy back in the directory does not inherit the removed one");
  });
});

describe("Enforcer: objects the agent's schema refuses", () => {
  it("keeps the last good version enforced and reports the current one Failed with the reason", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    const kept = policy("p", ["198.51.100.7"], { uid: "u1" });
    const r = await e.enforce(state([kept], { invalid: [{ name: "p", generation: 3, error: 'spec: Unrecognized key: "newField"', mode: "Enforce" }] }));
    assert.equal(r.ok, true);
    assert.deepEqual(r.applied.map((c) => [c.name, c.generation]), [["p", 1]], "generation 1 enforced");
    assert.deepEqual(r.results, [{ name: "p", generation: 3, mode: "Enforce", result: "Failed", message: `refused by the agent's schema: spec: Unrecognized key: "newField"; generation 1 stays enforced` }]);
  });

  it("one that never parsed is reported Failed and not enforced, on the nodes its selector picks", async () => {
    const nft = new RecordingNftExecutor();
    const e = enforcerWith(nft);
    const invalid = [
      { name: "new", generation: 1, error: "spec.rules.0: bad" },
      { name: "elsewhere", generation: 1, error: "spec.rules.0: bad", nodeSelector: { matchLabels: { role: "db" } } },
    ];
    const r = await e.enforce(state([], { invalid, nodeLabels: { role: "app" } }));
    assert.deepEqual(r.results, [{ name: "new", generation: 1, mode: "Audit", result: "Failed", message: "refused by the agent's schema: spec.rules.0: bad; not enforced" }]);
    assert.equal(r.applied.length, 0);
  });

  it("exports nftegress_invalid_objects and every apply result at 0 from the start", async () => {
    const e = enforcerWith(new RecordingNftExecutor());
    const lines = await metric(e, "nftegress_invalid_objects");
    assert.ok(lines.includes('nftegress_invalid_objects{kind="EgressPolicy"} 0'));
    assert.ok(lines.includes('nftegress_invalid_objects{kind="EgressAddressSet"} 0'));
    const apply = await metric(e, "nftegress_apply_total");
    for (const r of ["success", "partial", "failure", "invalid"]) assert.ok(apply.includes(`nftegress_apply_total{result="${r}"} 0`), r);
  });
});
