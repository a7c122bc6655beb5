// Commit-confirm on real nftables and real packets, without Kubernetes: a restarted agent whose
// first change fails the confirm check restores the table the agent before it left (rules,
// elements, named counters' values), in one transaction, and never deletes it.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { Enforcer } from "../../src/agent/enforcer.js";
import { EgressPolicy } from "../../src/api/policy.js";
import { FileRulesetStore } from "../../src/host/confirmed.js";
import { RealNftExecutor } from "../../src/nft/executor.js";
import { sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { policyJump } from "../support/policy.js";

const deny = (name: string, cidr: string) =>
  EgressPolicy.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name, generation: 1 },
    spec: { mode: "Enforce", defaultAction: "Allow", rules: [{ name: "no", action: "Deny", to: { cidrs: [cidr] } }] },
  });

function counter(ns: string, name: string): number {
  const out = sh("nsenter", [`--net=/run/netns/${ns}`, "nft", "list", "counter", "inet", "nftegress", name]);
  const m = /packets (\d+)/.exec(out.stdout);
  return m ? Number(m[1]) : NaN;
}

describe("commit-confirm on real nftables", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    t = await createTopology("cfm");
    files = tempDir();
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  it("a restarted agent whose first change fails confirm restores the previous agent's table", async () => {
    const host = { passwd: files.passwd, group: "/dev/null", resolvConf: "/dev/null", failsafeFile: "/dev/null", nodeName: "n", nodeLabels: {} };
    const stores = () => ({ saved: new FileRulesetStore(files.state, t.node) });
    const log = pino({ level: "silent" });
    const nft = () => new RealNftExecutor({ netns: t.node });
    const state = (p: EgressPolicy) => ({ policies: [p], addressSets: [], nodeLabels: {}, apiServers: [] });

    // The previous agent: denies 192.0.2.30, confirmed.
    const s1 = stores();
    const first = new Enforcer(nft(), host, log, { check: async () => true, deadlineMs: 100, intervalMs: 50, retryMs: 60_000, saved: s1.saved });
    const applied = await first.enforce(state(deny("old", "192.0.2.30")));
    assert.equal(applied.ok, true, applied.error);
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), "timeout");
    assert.equal(await probeTcp(t, "192.0.2.20", 443), "connected");
    for (let i = 0; i < 4; i++) await probeTcp(t, "192.0.2.30", 80, { timeoutMs: 200 });
    const counted = first.syncer.current?.counters.find((n) => n.endsWith("_denied")) ?? "";
    const deniedBefore = counter(t.node, counted);
    assert.ok(deniedBefore >= 5, `denied counter ${counted}: ${deniedBefore}`);

    // A new agent (a restart), whose first change loses the API server.
    const s2 = stores();
    const second = new Enforcer(nft(), host, log, { check: async () => false, deadlineMs: 100, intervalMs: 50, retryMs: 60_000, saved: s2.saved });
    let probesDuringChange = "";
    assert.ok(sh("nsenter", [`--net=/run/netns/${t.node}`, "nft", "list", "counter", "inet", "nftegress", counted]).code === 0);
    const r = await second.enforce(state(deny("new", "192.0.2.20")));
    const deniedAfter = counter(t.node, counted);
    probesDuringChange = await probeTcp(t, "192.0.2.20", 443);
    assert.deepEqual(r.results.map((x) => [x.name, x.result]), [["new", "RolledBack"]]);
    assert.match(r.error ?? "", /previous ruleset was restored/);
    assert.equal(probesDuringChange, "connected", "the change is gone: 192.0.2.20 is reachable again");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), "timeout", "the previous agent's policy is enforced again");
    const listing = sh("nsenter", [`--net=/run/netns/${t.node}`, "nft", "list", "table", "inet", "nftegress"]).stdout;
    assert.match(listing, policyJump("old"), "the table is the previous agent's");
    assert.doesNotMatch(listing, policyJump("new"));
    assert.ok(deniedAfter >= deniedBefore, `the named counter the change deleted came back with its value (${deniedAfter} >= ${deniedBefore})`);
    assert.match(await second.metrics.registry.getSingleMetricAsString("nftegress_rollbacks_total"), /nftegress_rollbacks_total 1/);

    // Drift repair after the rollback keeps the restored table (it is what the syncer applied).
    assert.deepEqual(await second.repairDrift(), []);
    // And a later change that confirms replaces it normally.
    const third = new Enforcer(nft(), host, log, { check: async () => true, deadlineMs: 100, intervalMs: 50, retryMs: 60_000, saved: stores().saved });
    assert.equal((await third.enforce(state(deny("new", "192.0.2.20")))).ok, true);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 500 }), "timeout");
  });
});
