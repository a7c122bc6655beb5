// What Argo CD (docs/argocd-health.lua in gopher-lua with Argo CD's libraries) and Flux (cli-utils
// kstatus Compute) make of the statuses the real controller writes through a real API server,
// in every state a GitOps sync can meet: new (the CRD's defaulted status only), reconciling,
// ready, spec changed and not observed yet, stalled, selecting no node, a node suspended. The
// two tools must agree in each, with the message a person needs. NodeEgressReports are written
// here as agents would.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { eventually, startController, type AgentProcess } from "../support/agent.js";
import { verdicts, type Verdict } from "../support/gitops-health.js";
import { startCluster, type Cluster } from "./support/cluster.js";
import { report } from "./support/reports.js";

interface Seen {
  object: { metadata: { generation?: number }; status?: { observedGeneration?: number; nodes?: { selected?: number }; conditions?: { type: string; status: string; reason?: string; message?: string }[] } };
  argo: Verdict;
  flux: Verdict;
}

const ARGO_OF_FLUX: Record<string, string> = { InProgress: "Progressing", Current: "Healthy", Failed: "Degraded" };

const policy = (name: string, selector: string, port = 443, extra = "") => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  nodeSelector: {matchLabels: {${selector}}}
  mode: Enforce
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]${extra}}, ports: [{protocol: TCP, port: ${port}}]}
`;


describe("Argo CD and Flux health of the real controller's statuses", () => {
  let cluster: Cluster;
  let controller: AgentProcess | undefined;

  const start = async (id: string) => {
    controller = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", id, "--lease-duration", "3"]);
  };
  const stop = async () => {
    await controller?.stop("SIGTERM");
    controller = undefined;
  };

  before(async () => {
    cluster = await startCluster();
    const nodes = [["n1", "app"], ["n2", "app"], ["n3", "db"]].map(([n, r]) => `apiVersion: v1\nkind: Node\nmetadata: {name: ${n}, labels: {role: ${r}}}\n`).join("---\n");
    const r = await cluster.kubectl(["apply", "-f", "-"], nodes);
    assert.equal(r.code, 0, r.stderr);
  });

  after(async () => {
    await stop();
    await cluster?.stop();
  });

  async function apply(text: string): Promise<void> {
    const r = await cluster.kubectl(["apply", "--server-side", "--field-manager", "test", "-f", "-"], text);
    assert.equal(r.code, 0, r.stderr);
  }

  async function judged(name: string): Promise<Seen> {
    const r = await cluster.kubectl(["get", "egresspolicy", name, "-o", "json"]);
    if (r.code !== 0) throw new Error(r.stderr);
    const object = JSON.parse(r.stdout) as Seen["object"];
    return { object, ...verdicts(object) };
  }

  /** Waits for the controller's status to reach a state, then checks both verdicts on it. */
  async function expect(name: string, what: string, reached: (s: Seen) => boolean, argo: Verdict["status"], flux: Verdict["status"]): Promise<Seen> {
    const s = await eventually(what, () => judged(name), reached, 20_000);
    assert.equal(s.flux.status, flux, `${what}: Flux says ${s.flux.status}: ${s.flux.message}`);
    assert.equal(s.argo.status, argo, `${what}: Argo CD says ${s.argo.status}: ${s.argo.message}`);
    assert.equal(ARGO_OF_FLUX[s.flux.status], s.argo.status, `${what}: Flux and Argo CD agree`);
    assert.ok(s.argo.message.length > 0 && s.flux.message.length > 0, `${what}: both show a message`);
    return s;
  }

  const cond = (s: Seen, type: string) => s.object.status?.conditions?.find((c) => c.type === type);

  it("new: before the controller wrote anything, the API server's defaulted status is in progress for both", async () => {
    await apply(policy("web", "role: app"));
    const s = await expect("web", "new", () => true, "Progressing", "InProgress");
    assert.deepEqual(s.object.status, { observedGeneration: 0 }, "only the CRD's default");
    assert.equal(s.argo.message, "Waiting for the nftegress controller to report a status");
  });

  it("reconciling, then ready once every selected node applied it", async () => {
    await start("c1");
    const pending = await expect("web", "reconciling", (s) => cond(s, "Reconciling")?.status === "True", "Progressing", "InProgress");
    assert.equal(pending.argo.message, "0 of 2 selected nodes applied generation 1 (2 pending)");
    assert.equal(pending.flux.message, pending.argo.message);
    await apply(report("n1", [{ name: "web", generation: 1, result: "Applied" }]));
    await apply(report("n2", [{ name: "web", generation: 1, result: "Applied" }]));
    const ready = await expect("web", "ready", (s) => cond(s, "Ready")?.status === "True", "Healthy", "Current");
    assert.equal(ready.argo.message, "generation 1 applied on all 2 selected nodes");
  });

  it("spec changed, not observed yet: both wait for the controller", async () => {
    await stop();
    await apply(policy("web", "role: app", 8443));
    const s = await expect("web", "not observed", (x) => x.object.metadata.generation === 2, "Progressing", "InProgress");
    assert.equal(s.object.status?.observedGeneration, 1);
    assert.equal(s.argo.message, "Waiting for the nftegress controller to observe generation 2");
    assert.equal(s.flux.message, "EgressPolicy generation is 2, but latest observed generation is 1");
    await start("c2");
    await expect("web", "observed, reconciling", (x) => x.object.status?.observedGeneration === 2, "Progressing", "InProgress");
  });

  it("stalled: a node failing the generation fails the sync with that node's message in both", async () => {
    await apply(report("n1", [{ name: "web", generation: 2, result: "Applied" }]));
    await apply(report("n2", [{ name: "web", generation: 2, result: "Failed", message: "unknown user appuser" }]));
    const s = await expect("web", "stalled", (x) => cond(x, "Stalled")?.status === "True", "Degraded", "Failed");
    assert.equal(s.argo.message, "1 of 2 selected nodes failed generation 2; first: n2: Failed: unknown user appuser");
    assert.equal(s.flux.message, s.argo.message);
  });

  it("suspended: a break-glass node is Healthy/Current and the message names it", async () => {
    await apply(report("n2", [{ name: "web", generation: 1, result: "Suspended" }]));
    const s = await expect("web", "suspended", (x) => cond(x, "Ready")?.reason === "NodesSuspended", "Healthy", "Current");
    assert.match(s.argo.message, /^1 of 2 selected nodes applied generation 2 \(1 suspended\); suspended by the node annotation nftegress\.io\/suspend, the policy is not enforced on: n2$/);
  });

  it("stalled: a rule naming an unknown EgressAddressSet", async () => {
    await apply(policy("bad-set", "role: app", 443, ", addressSets: [nosuchset]"));
    const s = await expect("bad-set", "unknown set", (x) => cond(x, "Stalled")?.reason === "UnknownAddressSet", "Degraded", "Failed");
    assert.match(s.argo.message, /nosuchset/);
  });

  it("no node selected: Healthy/Current (not an error), and Argo CD's message says it selects no node", async () => {
    await apply(policy("nowhere", "role: nothing"));
    const s = await expect("nowhere", "no nodes", (x) => cond(x, "Ready")?.reason === "NoNodesSelected", "Healthy", "Current");
    assert.equal(s.object.status?.nodes?.selected, 0);
    assert.equal(s.argo.message, "selects no node: spec.nodeSelector selects none of the 3 nodes: this policy is enforced nowhere");
  });
});
