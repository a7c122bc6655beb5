// The controller against a real kube-apiserver: NodeEgressReports (written here as agents
// would) are folded into EgressPolicy.status with kstatus conditions; two replicas elect one
// leader through a Lease, and the other takes over when the leader is killed.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { eventually, startController, type AgentProcess } from "../support/agent.js";
import { cli } from "../support/exec.js";
import { checkMetrics } from "../support/promtool.js";
import { startCluster, type Cluster } from "./support/cluster.js";
import { report } from "./support/reports.js";

const Status = z.object({
  metadata: z.object({ generation: z.number() }),
  status: z
    .object({
      observedGeneration: z.number().optional(),
      nodes: z.object({ selected: z.number(), applied: z.number(), failed: z.number(), pending: z.number() }).optional(),
      denied: z.object({ packets: z.number(), bytes: z.number() }).optional(),
      topDeniedDestinations: z.array(z.object({ address: z.string(), port: z.number().optional(), protocol: z.string(), packets: z.number(), nodes: z.number().optional() })).optional(),
      failedNodes: z.array(z.object({ node: z.string(), message: z.string() })).optional(),
      conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string(), message: z.string() })).optional(),
    })
    .optional(),
});
type Status = z.infer<typeof Status>;

const cond = (s: Status, type: string) => s.status?.conditions?.find((c) => c.type === type);


const policy = (name: string, selector: string, extra = "") => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  nodeSelector: {matchLabels: {${selector}}}
  mode: Enforce
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]${extra}}, ports: [{protocol: TCP, port: 443}]}
`;

describe("controller", () => {
  let cluster: Cluster;
  const controllers = new Map<string, AgentProcess>();

  before(async () => {
    cluster = await startCluster();
    const nodes = [["n1", "app"], ["n2", "app"], ["n3", "db"]].map(([n, r]) => `apiVersion: v1\nkind: Node\nmetadata: {name: ${n}, labels: {role: ${r}}}\n`).join("---\n");
    const r = await cluster.kubectl(["apply", "-f", "-"], nodes);
    assert.equal(r.code, 0, r.stderr);
    for (const id of ["c1", "c2"]) controllers.set(id, await startController(["--kubeconfig", cluster.kubeconfig, "--identity", id, "--lease-duration", "3"]));
  });

  after(async () => {
    await Promise.all([...controllers.values()].map((c) => c.stop("SIGTERM")));
    await cluster?.stop();
  });

  async function get(name: string): Promise<Status> {
    const r = await cluster.kubectl(["get", "egresspolicy", name, "-o", "json"]);
    if (r.code !== 0) throw new Error(r.stderr);
    return Status.parse(JSON.parse(r.stdout));
  }

  async function apply(text: string): Promise<void> {
    const r = await cluster.kubectl(["apply", "--server-side", "--field-manager", "test", "-f", "-"], text);
    assert.equal(r.code, 0, r.stderr);
  }

  it("reports a new policy as Reconciling until its nodes apply it, then Ready", async () => {
    await apply(policy("web", "role: app"));
    const pending = await eventually("pending", () => get("web"), (s) => s.status?.nodes?.pending === 2 && s.status.nodes.selected === 2, 20_000);
    assert.equal(cond(pending, "Reconciling")?.status, "True");
    assert.equal(cond(pending, "Ready")?.status, "False");
    await apply(report("n1", [{ name: "web", generation: 1, result: "Applied", denied: 5, top: "192.0.2.30" }]));
    await apply(report("n2", [{ name: "web", generation: 1, result: "Applied", denied: 7, top: "192.0.2.30" }]));
    await apply(report("n3", [{ name: "other", generation: 1, result: "Applied", denied: 100 }]));
    const ready = await eventually("ready", () => get("web"), (s) => cond(s, "Ready")?.status === "True", 20_000);
    assert.deepEqual(ready.status?.nodes, { selected: 2, applied: 2, failed: 0, pending: 0 });
    assert.equal(ready.status?.observedGeneration, 1);
    assert.deepEqual(ready.status?.denied, { packets: 12, bytes: 720 });
    assert.deepEqual(ready.status?.topDeniedDestinations, [{ address: "192.0.2.30", port: 443, protocol: "tcp", packets: 12, nodes: 2 }]);
    assert.equal(cond(ready, "Reconciling")?.status, "False");
    const cols = await cluster.kubectl(["get", "egresspolicy", "web"]);
    assert.match(cols.stdout, /web\s+Enforce\s+2\s+2\s+12\s+True/);
    const events = await eventually("event", () => cluster.kubectl(["get", "events", "--field-selector", "involvedObject.name=web", "-o", "name"]), (r) => r.stdout.trim() !== "", 10_000);
    assert.ok(events.stdout.length > 0);
  });

  it("top and suggest show the cluster-wide view from the statuses", async () => {
    const top = await cli(["top", "--kubeconfig", cluster.kubeconfig]);
    assert.equal(top.code, 0, top.stderr);
    assert.match(top.stdout, /^POLICY\s+MODE\s+SELECTED\s+APPLIED\s+FAILED\s+DENIED\s+WOULD-DENY\s+TOP-DESTINATION\s+READY/);
    assert.match(top.stdout, /\nweb\s+Enforce\s+2\s+2\s+0\s+12\s+0\s+192\.0\.2\.30:443\/tcp \(12\)\s+True Applied/);
    const sug = await cli(["suggest", "web", "--kubeconfig", cluster.kubeconfig]);
    assert.equal(sug.code, 0, sug.stderr);
    assert.match(sug.stdout, /name: suggested-tcp-443\n\s+action: Allow\n\s+to:\n\s+cidrs:\n\s+- 192\.0\.2\.30\/32/);
  });

  it("writes a status only when it changes, not once per report", async () => {
    const leaderId = (await cluster.kubectl(["get", "lease", "-n", "default", "nftegress-controller", "-o", "jsonpath={.spec.holderIdentity}"])).stdout.trim();
    const leader = controllers.get(leaderId);
    assert.ok(leader, `leader ${leaderId}`);
    const reconciled = async (result: string) => {
      const m = (await leader.get("/metrics")).text.split("\n").find((l) => l.startsWith(`nftegress_controller_reconcile_total{result="${result}"}`));
      return Number(m?.split(" ").pop() ?? 0);
    };
    const written = () => reconciled("written");
    const before = await written();
    const unchangedBefore = await reconciled("unchanged");
    // The same reports again, with a new resourceVersion each: nothing in the status changes.
    for (let i = 0; i < 3; i++) {
      await apply(report("n1", [{ name: "web", generation: 1, result: "Applied", denied: 5, top: "192.0.2.30" }]).replace("rulesetHash: abc", `rulesetHash: abc${i}`));
    }
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(await written(), before, "no status write for reports that change nothing in it");
    // Reports within the batch interval (1 s) fold into one reconcile round.
    assert.ok((await reconciled("unchanged")) > unchangedBefore, "but it did reconcile");
  });

  it("a node failing the current generation makes the policy Stalled with its message", async () => {
    await apply(report("n2", [{ name: "web", generation: 1, result: "Failed", message: "spec.rules[0].users[0]: unknown user" }]));
    const s = await eventually("stalled", () => get("web"), (x) => cond(x, "Stalled")?.status === "True", 20_000);
    assert.equal(s.status?.nodes?.failed, 1);
    assert.equal(s.status?.failedNodes?.[0]?.node, "n2");
    assert.match(s.status?.failedNodes?.[0]?.message ?? "", /unknown user/);
  });

  it("an unknown address set makes the policy Stalled; a policy selecting no node says so", async () => {
    await apply(policy("bad-set", "role: app", ", addressSets: [nosuchset]"));
    const bad = await eventually("stalled", () => get("bad-set"), (x) => cond(x, "Stalled")?.reason === "UnknownAddressSet", 20_000);
    assert.match(cond(bad, "Stalled")?.message ?? "", /nosuchset/);
    await apply(policy("nowhere", "role: nothing"));
    const none = await eventually("no nodes", () => get("nowhere"), (x) => cond(x, "Ready")?.reason === "NoNodesSelected", 20_000);
    assert.equal(none.status?.nodes?.selected, 0);
  });

  it("serves /metrics that promtool check metrics passes, on the leader and the follower", async () => {
    const leaderId = (await cluster.kubectl(["get", "lease", "-n", "default", "nftegress-controller", "-o", "jsonpath={.spec.holderIdentity}"])).stdout.trim();
    assert.equal(controllers.size, 2);
    for (const [id, c] of controllers) {
      const m = (await c.get("/metrics")).text;
      if (id === leaderId) {
        // The leader's per-policy gauges and reconcile histogram have series by now.
        assert.match(m, /^nftegress_policy_nodes\{policy="web",state="applied"\} \d/m);
        assert.match(m, /^nftegress_policy_denied_packets\{policy="web"\} \d/m);
        assert.match(m, /^nftegress_controller_reconcile_duration_seconds_bucket\{le="\+Inf"\} [1-9]/m);
      }
      assert.match(m, /^nftegress_controller_leader \d/m);
      assert.deepEqual(checkMetrics(m), { code: 0, problems: [] }, `controller ${id}`);
    }
  });

  it("the other replica takes over when the leader is killed", async () => {
    const lease = await cluster.kubectl(["get", "lease", "-n", "default", "nftegress-controller", "-o", "jsonpath={.spec.holderIdentity}"]);
    const leader = lease.stdout.trim();
    assert.ok(leader === "c1" || leader === "c2", `leader: ${leader}`);
    await controllers.get(leader)?.stop("SIGKILL");
    controllers.delete(leader);
    await apply(report("n1", [{ name: "web", generation: 1, result: "Applied", denied: 50, top: "192.0.2.30" }]));
    const started = Date.now();
    await eventually("status updated by the new leader", () => get("web"), (x) => x.status?.denied?.packets === 50, 20_000);
    const took = Date.now() - started;
    assert.ok(took < 12_000, `took ${took} ms`);
    const now = await cluster.kubectl(["get", "lease", "-n", "default", "nftegress-controller", "-o", "jsonpath={.spec.holderIdentity}"]);
    assert.notEqual(now.stdout.trim(), leader);
  });
});
