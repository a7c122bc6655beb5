// Commit-confirmed, with the recording executor: a change after which the API server cannot
// be reached is rolled back to the last confirmed ruleset and reported RolledBack, and the
// same change is not retried at once.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Enforcer } from "../../src/agent/enforcer.js";
import { RecordingNftExecutor } from "../../src/nft/fake.js";
import { EgressPolicy } from "../../src/api/policy.js";

const policy = (allow: string, generation: number) =>
  EgressPolicy.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name: "p", generation },
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

  it("rolls the first apply back to no table at all", async () => {
    const nft = new RecordingNftExecutor();
    nft.dormant = null;
    const enforcer = new Enforcer(nft, host, pino({ level: "silent" }), { check: async () => false, deadlineMs: 20, intervalMs: 10, retryMs: 60_000 });
    nft.onApply = () => (nft.dormant = false);
    const r = await enforcer.enforce({ policies: [policy("192.0.2.10", 1)], addressSets: [], nodeLabels: {}, apiServers: [] });
    assert.equal(r.results[0]?.result, "RolledBack");
    assert.equal(nft.applied.at(-1), "delete table inet nftegress\n");
  });
});
