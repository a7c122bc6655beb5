// Isolation against a real kube-apiserver, one simulated node with its own network namespace:
// - an update the agent's schema refuses (written through a CRD that preserves unknown fields,
//   as a newer CRD would) keeps the last good version enforced on real packets and is reported
//   Failed on the node with the reason; one that never parsed is Failed and not enforced; the
//   nftegress_invalid_objects gauge counts them; a deletion still removes the policy;
// - a policy deleted and recreated (new uid) with a spec that fails to compile never inherits
//   the old spec;
// - a policy the kernel refuses fails alone: the agent runs in this process with the real
//   executor, except that `meta skuid 4242` in every script becomes `meta skuid 4294967296`,
//   which nft refuses (no input the schema now lets through was found that the kernel refuses;
//   see test/nft/isolation.test.ts), and the NodeEgressReport says Failed with nft's message.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { z } from "zod";
import { ClusterAgent } from "../../src/agent/cluster.js";
import { KubeClient } from "../../src/kube/client.js";
import { RealNftExecutor } from "../../src/nft/executor.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, freePort } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

class CorruptingExecutor extends RealNftExecutor {
  private static corrupt(script: string): string {
    return script.replaceAll("meta skuid 4242", "meta skuid 4294967296");
  }
  override apply(script: string): Promise<void> {
    return super.apply(CorruptingExecutor.corrupt(script));
  }
  override check(script: string): Promise<void> {
    return super.check(CorruptingExecutor.corrupt(script));
  }
}

const Report = z.object({
  status: z.object({ policies: z.array(z.object({ name: z.string(), generation: z.number(), result: z.string(), message: z.string().optional() })) }),
});

const policy = (name: string, addr: string, extra: { spec?: string; rule?: string } = {}) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  mode: Enforce
  defaultAction: Allow
${extra.spec ?? ""}  rules:
    - name: deny
      action: Deny
      to: {cidrs: ["${addr}"]}
      ports: [{protocol: TCP, port: 443}]
${extra.rule ?? ""}`;

describe("isolation on a simulated node", () => {
  let cluster: Cluster;
  let files: TempDir;
  let t: Topology;
  let agent: ClusterAgent;

  before(async () => {
    cluster = await startCluster();
    files = tempDir();
    const r = await cluster.kubectl(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: node-i, labels: {role: app}}\n");
    assert.equal(r.code, 0, r.stderr);
    t = await createTopology("i");
    const build = { passwd: files.passwd, group: "/dev/null", resolvConf: "/dev/null", failsafeFile: "/dev/null", nodeName: "node-i", nodeLabels: {} };
    const log = pino({ level: process.env["NFTEGRESS_TEST_LOG"] ? "info" : "silent" });
    agent = new ClusterAgent(KubeClient.load(cluster.kubeconfig), new CorruptingExecutor({ netns: t.node }), { nodeName: "node-i", build, metricsAddress: `127.0.0.1:${await freePort()}`, reportIntervalMs: 1000, driftIntervalMs: 60_000, countersIntervalMs: 2000, confirmTimeoutMs: 0 }, log);
    await agent.start();
  });
  after(async () => {
    await agent?.stop();
    await cluster?.stop();
    await t?.close();
    files?.remove();
  });

  const kubectl = async (args: string[], stdin?: string) => {
    const r = await cluster.kubectl(args, stdin);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  const blocked = (addr: string) => eventually(`${addr} blocked`, () => probeTcp(t, addr, 443, { timeoutMs: 400 }), (r) => r === "timeout", 15_000);
  const open = (addr: string) => eventually(`${addr} open`, () => probeTcp(t, addr, 443, { timeoutMs: 400 }), (r) => r === "connected", 15_000);
  const entry = (name: string, ok: (p: z.infer<typeof Report>["status"]["policies"][number]) => boolean) =>
    eventually(
      `report of ${name}`,
      async () => Report.parse(JSON.parse(await kubectl(["get", "nodeegressreport", "node-i", "-o", "json"]))).status.policies.find((p) => p.name === name),
      (p) => p !== undefined && ok(p),
      15_000,
    );
  const invalidGauge = async () => {
    const text = await agent.enforcer.metrics.registry.getSingleMetricAsString("nftegress_invalid_objects");
    return Number(/nftegress_invalid_objects\{kind="EgressPolicy"\} (\d+)/.exec(text)?.[1]);
  };

  it("enforces a deny policy", async () => {
    await kubectl(["apply", "-f", "-"], policy("deny-30", "192.0.2.30"));
    await blocked("192.0.2.30");
    await entry("deny-30", (p) => p.result === "Applied" && p.generation === 1);
    assert.equal(await invalidGauge(), 0);
  });

  it("an update the agent's schema refuses keeps the last good version enforced, reported Failed with the reason", async () => {
    // A newer CRD: spec keeps fields this agent does not know.
    await kubectl(["patch", "crd", "egresspolicies.nftegress.io", "--type=json", "-p", JSON.stringify([{ op: "add", path: "/spec/versions/0/schema/openAPIV3Schema/properties/spec/x-kubernetes-preserve-unknown-fields", value: true }])]);
    // The API server switches to the new schema asynchronously, and until then its watches may
    // still prune the field: wait until this agent itself sees a probe object with the field.
    await eventually("CRD relaxed", () => cluster.kubectl(["apply", "-f", "-"], policy("probe-unknown", "192.0.2.53", { spec: "  newerField: x\n" })), (r) => r.code === 0, 15_000);
    await eventually("the agent sees the newer field", async () => (await kubectl(["annotate", "--overwrite", "egresspolicy", "probe-unknown", `probe=${Date.now()}`]), invalidGauge()), (n) => n === 1, 20_000);
    await kubectl(["delete", "egresspolicy", "probe-unknown"]);
    await eventually("probe gone", invalidGauge, (n) => n === 0);
    await kubectl(["apply", "-f", "-"], policy("deny-30", "192.0.2.30", { spec: "  newerField: {rateLimit: 5}\n" }));
    const p = await entry("deny-30", (x) => x.result === "Failed" && x.generation === 2);
    assert.match(p?.message ?? "", /refused by the agent's schema: .*newerField.*; generation 1 stays enforced/);
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout", "the deny rule stays enforced");
    await eventually("gauge", invalidGauge, (n) => n === 1);
  });

  it("one that never parsed is reported Failed and not enforced", async () => {
    await kubectl(["apply", "-f", "-"], policy("fresh-bad", "192.0.2.20", { spec: "  newerField: x\n" }));
    const p = await entry("fresh-bad", (x) => x.result === "Failed");
    assert.match(p?.message ?? "", /refused by the agent's schema: .*newerField.*; not enforced/);
    assert.equal(await probeTcp(t, "192.0.2.20", 443), "connected");
    await eventually("gauge", invalidGauge, (n) => n === 2);
  });

  it("deleting an object whose current version is refused still removes it", async () => {
    await kubectl(["delete", "egresspolicy", "deny-30", "fresh-bad"]);
    await open("192.0.2.30");
    await eventually("gauge", invalidGauge, (n) => n === 0);
    await eventually("report", () => kubectl(["get", "nodeegressreport", "node-i", "-o", "json"]), (s) => !s.includes("deny-30") && !s.includes("fresh-bad"));
  });

  it("a policy deleted and recreated with a spec that fails to compile never inherits the old one", async () => {
    await kubectl(["apply", "-f", "-"], policy("re", "192.0.2.10"));
    await blocked("192.0.2.10");
    await kubectl(["delete", "egresspolicy", "re"]);
    await kubectl(["apply", "-f", "-"], policy("re", "192.0.2.10", { rule: "      users: [nosuchuser]\n" }));
    const p = await entry("re", (x) => x.result === "Failed");
    assert.match(p?.message ?? "", /unknown user "nosuchuser"/);
    await open("192.0.2.10");
    await kubectl(["delete", "egresspolicy", "re"]);
  });

  it("a policy the kernel refuses fails alone, with nft's message; the others apply", async () => {
    await kubectl(["apply", "-f", "-"], `${policy("k-bad", "192.0.2.10", { rule: '      users: ["4242"]\n' })}---\n${policy("k-good", "192.0.2.20")}`);
    await blocked("192.0.2.20");
    const bad = await entry("k-bad", (x) => x.result === "Failed");
    assert.match(bad?.message ?? "", /^nft refused this policy: Value too large.*; not applied$/);
    await entry("k-good", (x) => x.result === "Applied");
    const text = await agent.enforcer.metrics.registry.getSingleMetricAsString("nftegress_apply_total");
    assert.match(text, /nftegress_apply_total\{result="partial"\} [1-9]/);
  });
});
