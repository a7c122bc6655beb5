// Agents against a real kube-apiserver: Node objects plus one agent process per node, each
// enforcing in its own network namespace with a world behind it; real packets decide.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { sh } from "../support/exec.js";
import { createTopology, probeTcp, probeUdp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, startController, type AgentProcess } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const Report = z.object({
  metadata: z.object({ name: z.string(), ownerReferences: z.array(z.object({ kind: z.string(), name: z.string(), uid: z.string() })) }),
  status: z.object({
    rulesetHash: z.string(),
    policies: z.array(z.object({ name: z.string(), generation: z.number(), mode: z.string(), result: z.string(), denied: z.object({ packets: z.number() }), wouldDeny: z.object({ packets: z.number() }) })),
  }),
});

const policy = (mode: string, selector: string, allow: string) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: web-only}
spec:
  nodeSelector: {matchLabels: {${selector}}}
  mode: ${mode}
  rules:
    - {name: web, action: Allow, to: {cidrs: ["${allow}"]}, ports: [{protocol: TCP, port: 443}]}
`;

describe("agents on simulated nodes", () => {
  let cluster: Cluster;
  let files: TempDir;
  const topo = new Map<string, Topology>();
  const agents = new Map<string, AgentProcess>();
  let controller: AgentProcess;

  before(async () => {
    cluster = await startCluster();
    files = tempDir();
    for (const [name, role] of [["node-a", "app"], ["node-b", "db"]] as const) {
      const r = await cluster.kubectl(["apply", "-f", "-"], `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}, labels: {role: ${role}}}\n`);
      assert.equal(r.code, 0, r.stderr);
      const t = await createTopology(name.slice(-1));
      topo.set(name, t);
      // The default failsafe, with no resolver and no time server of this machine's (an empty
      // --time-root): what it opens here is the overlay to the Nodes' addresses.
      agents.set(name, await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", name, "--netns", t.node, "--passwd", files.passwd, "--resolv-conf", "/dev/null", "--time-root", files.state, "--report-interval", "1", "--drift-interval", "2", "--state-dir", files.state]));
    }
    controller = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "c", "--lease-duration", "3"]);
  });

  after(async () => {
    await Promise.all([...agents.values(), controller].map((a) => a?.stop("SIGTERM")));
    await cluster?.stop();
    for (const t of topo.values()) await t.close();
    files?.remove();
  });

  const t = (n: string) => topo.get(n) as Topology;
  const blocked = (n: string, addr = "192.0.2.20") => eventually(`${n} blocks ${addr}`, () => probeTcp(t(n), addr, 443, { timeoutMs: 500 }), (r) => r === "timeout", 15_000);
  const open = (n: string, addr = "192.0.2.20") => eventually(`${n} reaches ${addr}`, () => probeTcp(t(n), addr, 443, { timeoutMs: 500 }), (r) => r === "connected", 15_000);
  async function report(node: string) {
    const r = await cluster.kubectl(["get", "nodeegressreport", node, "-o", "json"]);
    if (r.code !== 0) throw new Error(r.stderr);
    return Report.parse(JSON.parse(r.stdout));
  }

  it("agents become ready without any policy and change nothing; the API server stays in the guard", async () => {
    for (const a of agents.values()) await eventually("readyz", () => a.get("/readyz"), (r) => r.status === 200, 20_000);
    assert.equal(await probeTcp(t("node-a"), "192.0.2.20", 443), "connected");
    const port = new URL(cluster.server).port;
    const guard = sh("ip", ["netns", "exec", t("node-a").node, "nft", "list", "chain", "inet", "nftegress", "guard"]).stdout;
    assert.match(guard, new RegExp(`127\\.0\\.0\\.1 \\. ${port}`), guard);
  });

  it("a policy reaches only the nodes it selects, in Audit then Enforce", async () => {
    let r = await cluster.kubectl(["apply", "-f", "-"], policy("Audit", "role: app", "192.0.2.10"));
    assert.equal(r.code, 0, r.stderr);
    const audit = await eventually("node-a reports the Audit policy", () => report("node-a"), (x) => x.status.policies.some((p) => p.name === "web-only" && p.mode === "Audit" && p.result === "Applied"));
    assert.equal(audit.metadata.ownerReferences[0]?.kind, "Node");
    assert.equal(audit.metadata.ownerReferences[0]?.name, "node-a");
    assert.equal(await probeTcp(t("node-a"), "192.0.2.20", 443), "connected", "Audit does not block");
    await eventually("would-deny reported", () => report("node-a"), (x) => (x.status.policies[0]?.wouldDeny.packets ?? 0) >= 1, 20_000);
    r = await cluster.kubectl(["apply", "-f", "-"], policy("Enforce", "role: app", "192.0.2.10"));
    assert.equal(r.code, 0, r.stderr);
    await blocked("node-a");
    assert.equal(await probeTcp(t("node-a"), "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t("node-b"), "192.0.2.20", 443), "connected", "node-b is not selected");
    const rep = await eventually("generation 2 applied", () => report("node-a"), (x) => x.status.policies.some((p) => p.generation === 2 && p.mode === "Enforce" && p.result === "Applied"));
    assert.ok(rep.status.rulesetHash.length > 0);
    const b = await report("node-b");
    assert.deepEqual(b.status.policies, [], "node-b reports no policy");
  });

  it("the overlay ports open only to the Nodes' addresses, kept current as Nodes come and go", async () => {
    // node-a is under the Enforce default-deny policy. node-b's address is a world address
    // with a UDP listener on 4789; status is a subresource, written as the kubelet would.
    const setAddress = async (node: string, address: string) => {
      const r = await cluster.kubectl(["patch", "node", node, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { addresses: [{ type: "InternalIP", address }, { type: "Hostname", address: node }] } })]);
      assert.equal(r.code, 0, r.stderr);
    };
    const udp = (addr: string) => probeUdp(t("node-a"), addr, 4789, { timeoutMs: 500 });
    await setAddress("node-b", "192.0.2.10");
    await eventually("VXLAN from node-a to node-b's address", () => udp("192.0.2.10"), (r) => r === "connected", 15_000);
    assert.equal(await udp("192.0.2.20"), "eperm", "VXLAN to a world address that is no Node's");
    assert.equal(await udp("192.0.2.30"), "eperm", "not a Node yet");
    // A Node added later is reachable on the overlay ports within seconds.
    let r = await cluster.kubectl(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: node-c, labels: {role: spare}}\n");
    assert.equal(r.code, 0, r.stderr);
    const started = Date.now();
    await setAddress("node-c", "192.0.2.30");
    await eventually("VXLAN from node-a to the new node-c", () => udp("192.0.2.30"), (x) => x === "connected", 10_000);
    const ms = Date.now() - started;
    console.log(`# node-c reachable on UDP 4789 ${ms} ms after its address was written`);
    assert.ok(ms < 10_000, `${ms} ms`);
    const rep = await eventually(
      "node-a reports its guard",
      async () => JSON.parse((await cluster.kubectl(["get", "nodeegressreport", "node-a", "-o", "json"])).stdout) as { status: { guard?: { name: string; ports?: string[]; destinations: number; addresses?: string[] }[] } },
      (x) => (x.status.guard ?? []).some((g) => g.name === "vxlan" && g.destinations === 2),
      15_000,
    );
    assert.deepEqual(rep.status.guard?.find((g) => g.name === "vxlan"), { name: "vxlan", protocol: "UDP", ports: ["4789", "8472"], destinations: 2, addresses: ["192.0.2.10", "192.0.2.30"] });
    assert.deepEqual(rep.status.guard?.find((g) => g.name === "ntp"), { name: "ntp", protocol: "UDP", ports: ["123"], destinations: 0 }, "no time server configured: NTP opens nothing");
    // A Node deleted: its address is closed again.
    r = await cluster.kubectl(["delete", "node", "node-c"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually("VXLAN to the deleted node-c closed", () => udp("192.0.2.30"), (x) => x === "eperm", 10_000);
    assert.equal(await udp("192.0.2.10"), "connected", "node-b still open");
  });

  it("relabelling nodes moves enforcement", async () => {
    let r = await cluster.kubectl(["label", "node", "node-b", "role=app", "--overwrite"]);
    assert.equal(r.code, 0, r.stderr);
    await blocked("node-b");
    r = await cluster.kubectl(["label", "node", "node-a", "role=web", "--overwrite"]);
    assert.equal(r.code, 0, r.stderr);
    await open("node-a");
  });

  it("counters rise in the node report and the policy status after real blocked traffic", async () => {
    await probeTcp(t("node-b"), "192.0.2.30", 443, { timeoutMs: 500 });
    await eventually("denied reported", () => report("node-b"), (x) => (x.status.policies.find((p) => p.name === "web-only")?.denied.packets ?? 0) >= 2, 20_000);
    const Status = z.object({ status: z.object({ denied: z.object({ packets: z.number() }), nodes: z.object({ selected: z.number(), applied: z.number(), failed: z.number(), pending: z.number() }), topDeniedDestinations: z.array(z.object({ address: z.string(), port: z.number().optional() })) }) });
    const s = await eventually(
      "policy status",
      async () => Status.parse(JSON.parse((await cluster.kubectl(["get", "egresspolicy", "web-only", "-o", "json"])).stdout)),
      (x) => x.status.denied.packets >= 2 && x.status.topDeniedDestinations.some((d) => d.address === "192.0.2.30" && d.port === 443),
      20_000,
    );
    assert.deepEqual(s.status.nodes, { selected: 1, applied: 1, failed: 0, pending: 0 });
  });

  it("evaluates two policies in priority order on the node", async () => {
    const r = await cluster.kubectl(["apply", "-f", "-"], `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: block-first}
spec:
  priority: 10
  mode: Enforce
  defaultAction: Allow
  rules:
    - {name: no-10, action: Deny, to: {cidrs: ["192.0.2.10"]}}
`);
    assert.equal(r.code, 0, r.stderr);
    await blocked("node-b", "192.0.2.10");
    await blocked("node-a", "192.0.2.10");
    const del = await cluster.kubectl(["delete", "egresspolicy", "block-first"]);
    assert.equal(del.code, 0, del.stderr);
    await open("node-b", "192.0.2.10");
  });

  it("the suspend annotation makes the node's table dormant and is reported", async () => {
    let r = await cluster.kubectl(["annotate", "node", "node-b", "nftegress.io/suspend=true"]);
    assert.equal(r.code, 0, r.stderr);
    await open("node-b");
    await eventually("reported Suspended", () => report("node-b"), (x) => x.status.policies.some((p) => p.name === "web-only" && p.result === "Suspended"), 15_000);
    r = await cluster.kubectl(["annotate", "node", "node-b", "nftegress.io/suspend-"]);
    assert.equal(r.code, 0, r.stderr);
    await blocked("node-b");
    await eventually("reported Applied again", () => report("node-b"), (x) => x.status.policies.some((p) => p.name === "web-only" && p.result === "Applied"), 15_000);
  });

  it("deleting the policy removes its rules", async () => {
    const r = await cluster.kubectl(["delete", "egresspolicy", "web-only"]);
    assert.equal(r.code, 0, r.stderr);
    await open("node-b");
  });

  it("deleting a Node garbage-collects its report", async () => {
    await agents.get("node-a")?.stop("SIGTERM");
    agents.delete("node-a");
    const r = await cluster.kubectl(["delete", "node", "node-a"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually("report of node-a gone", () => cluster.kubectl(["get", "nodeegressreport", "node-a"]), (x) => x.code !== 0 && /NotFound/.test(x.stderr), 30_000);
  });
});
