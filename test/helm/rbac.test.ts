// Least privilege, proven against a real kube-apiserver with the objects of deploy/ (the chart
// with default values) installed, by impersonating the components' service accounts with the
// node name the API server binds into a pod's token (authentication.kubernetes.io/node-name):
// - the agent reads policies, address sets, nodes and the `kubernetes` EndpointSlices, and
//   writes NodeEgressReports; the ValidatingAdmissionPolicy limits those writes to its own
//   node's report (create, change, delete), checked with real writes;
// - the controller reads what it aggregates and writes only egresspolicies/status, its Lease
//   and Events;
// - neither reads Secrets or writes a policy's spec.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { startCluster, type Cluster } from "../kube/support/cluster.js";
import type { Result } from "../support/exec.js";
import { DEPLOY, NAMESPACE } from "./support/tools.js";

const SA = (name: string): string[] => [
  `--as=system:serviceaccount:${NAMESPACE}:${name}`,
  "--as-group=system:serviceaccounts",
  `--as-group=system:serviceaccounts:${NAMESPACE}`,
];
/** The agent as the API server sees it in a pod on `node` (none: a token not bound to a node). */
const agentOn = (node?: string): string[] => [...SA("nftegress-agent"), ...(node ? [`--as-user-extra=authentication.kubernetes.io/node-name=${node}`] : [])];
const controller = [...SA("nftegress-controller"), "--as-user-extra=authentication.kubernetes.io/node-name=node-c"];

const VAP_DENIED = /ValidatingAdmissionPolicy 'nftegress-agent-own-report' with binding 'nftegress-agent-own-report' denied request/;
const RBAC_DENIED = /is forbidden: User "system:serviceaccount:nftegress-system:nftegress-(agent|controller)" cannot/;

function report(node: string, uid: string, packets = 0): string {
  return JSON.stringify({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "NodeEgressReport",
    metadata: { name: node, ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node, uid }] },
    status: { rulesetHash: "abc", policies: [{ name: "p", generation: 1, mode: "Audit", result: "Applied", denied: { packets, bytes: 0 }, wouldDeny: { packets: 0, bytes: 0 } }] },
  });
}

function ok(r: Result, what: string): void {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
}

function denied(r: Result, why: RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what} must be refused: ${r.stdout}`);
  assert.match(r.stderr, why, what);
}

describe("RBAC and admission of the agent and the controller", () => {
  let cluster: Cluster;
  const uids = new Map<string, string>();

  before(async () => {
    cluster = await startCluster();
    ok(await cluster.kubectl(["apply", "-f", DEPLOY]), "kubectl apply -f deploy/");
    for (const node of ["node-a", "node-b"]) {
      const r = await cluster.kubectl(["create", "-f", "-", "-o", "jsonpath={.metadata.uid}"], JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: node } }));
      ok(r, `create node ${node}`);
      uids.set(node, r.stdout);
    }
    ok(await cluster.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p" }, spec: { nodeSelector: {} } })), "create policy");
    ok(await cluster.kubectl(["-n", NAMESPACE, "create", "secret", "generic", "s", "--from-literal=k=v"]), "create secret");
    // The API server loads admission policies asynchronously: wait until ours denies.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await cluster.kubectl(["create", "--dry-run=server", "-f", "-", ...agentOn("node-a")], report("node-b", uids.get("node-b") ?? ""));
      if (r.code !== 0 && VAP_DENIED.test(r.stderr)) break;
      if (Date.now() > deadline) throw new Error(`the ValidatingAdmissionPolicy never denied: ${r.stdout}${r.stderr}`);
      await sleep(250);
    }
  });

  after(async () => {
    await cluster?.stop();
  });

  async function canI(who: string[], args: string[]): Promise<boolean> {
    const r = await cluster.kubectl(["auth", "can-i", ...args, ...who]);
    if (r.code !== 0 && r.code !== 1) throw new Error(`kubectl auth can-i ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim() === "yes";
  }

  async function expectCan(who: string[], name: string, table: [string, boolean][]): Promise<void> {
    const got = await Promise.all(table.map(([q]) => canI(who, q.split(" "))));
    const wrong = table.filter(([, want], i) => got[i] !== want).map(([q, want]) => `${name} ${want ? "cannot" : "can"}: ${q}`);
    assert.deepEqual(wrong, []);
  }

  /** The resource rules of `kubectl auth can-i --list` (without the self-review APIs every user has). */
  async function resourceRules(who: string[], namespace: string): Promise<string[]> {
    const r = await cluster.kubectl(["auth", "can-i", "--list", "-n", namespace, ...who]);
    ok(r, "can-i --list");
    return r.stdout
      .split("\n")
      .slice(1)
      .filter((l) => /^\S/.test(l) && !/^self\w+reviews\./.test(l))
      .map((l) => l.replace(/\s+/g, " ").trim())
      .sort();
  }

  it("the agent can read what it watches and nothing else", async () => {
    const agent = agentOn("node-a");
    await expectCan(agent, "agent", [
      ["list egresspolicies.nftegress.io", true],
      ["watch egresspolicies.nftegress.io", true],
      ["list egressaddresssets.nftegress.io", true],
      ["watch egressaddresssets.nftegress.io", true],
      ["get nodes/node-a", true],
      ["watch nodes", true],
      ["list endpointslices.discovery.k8s.io -n default", true],
      ["watch endpointslices.discovery.k8s.io -n default", true],
      ["list endpointslices.discovery.k8s.io -n kube-system", false],
      ["list endpointslices.discovery.k8s.io -n nftegress-system", false],
      ["get secrets -n default", false],
      ["get secrets -n nftegress-system", false],
      ["list secrets --all-namespaces", false],
      ["list configmaps -n nftegress-system", false],
      ["list pods --all-namespaces", false],
      ["update nodes/node-a", false],
      ["patch nodes/node-a", false],
      ["create events -n nftegress-system", false],
      ["get leases -n nftegress-system", false],
      ["create egresspolicies.nftegress.io", false],
      ["update egresspolicies.nftegress.io", false],
      ["patch egresspolicies.nftegress.io", false],
      ["delete egresspolicies.nftegress.io", false],
      ["patch egresspolicies.nftegress.io --subresource=status", false],
      ["create egressaddresssets.nftegress.io", false],
      // Its own DaemonSet only, by name (--owner-daemonset: tables go with a deleted DaemonSet).
      [`get daemonsets.apps/nftegress-agent -n ${NAMESPACE}`, true],
      [`watch daemonsets.apps/nftegress-agent -n ${NAMESPACE}`, true],
      [`list daemonsets.apps -n ${NAMESPACE}`, false],
      [`get daemonsets.apps/nftegress-controller -n ${NAMESPACE}`, false],
      ["get daemonsets.apps/nftegress-agent -n default", false],
      [`patch daemonsets.apps/nftegress-agent -n ${NAMESPACE}`, false],
    ]);
    // RBAC cannot restrict list/watch of nodes to one name (the agent watches its own Node
    // through a field selector): every agent can read every Node. Nothing else is granted.
    assert.deepEqual(await resourceRules(agent, "default"), [
      "egressaddresssets.nftegress.io [] [] [get list watch]",
      "egresspolicies.nftegress.io [] [] [get list watch]",
      "endpointslices.discovery.k8s.io [] [] [get list watch]",
      "nodeegressreports.nftegress.io [] [] [get create patch]",
      "nodes [] [] [get list watch]",
    ]);
    assert.deepEqual(await resourceRules(agent, NAMESPACE), [
      "daemonsets.apps [] [nftegress-agent] [get list watch]",
      "egressaddresssets.nftegress.io [] [] [get list watch]",
      "egresspolicies.nftegress.io [] [] [get list watch]",
      "nodeegressreports.nftegress.io [] [] [get create patch]",
      "nodes [] [] [get list watch]",
    ]);
  });

  it("the controller can read what it aggregates and write only policy status, its Lease and Events", async () => {
    await expectCan(controller, "controller", [
      ["list egresspolicies.nftegress.io", true],
      ["watch egresspolicies.nftegress.io", true],
      ["watch nodeegressreports.nftegress.io", true],
      ["watch egressaddresssets.nftegress.io", true],
      ["watch nodes", true],
      ["patch egresspolicies.nftegress.io --subresource=status", true],
      ["create events -n nftegress-system", true],
      ["get leases/nftegress-controller -n nftegress-system", true],
      ["update leases/nftegress-controller -n nftegress-system", true],
      ["create leases -n nftegress-system", true],
      ["update leases/kube-scheduler -n nftegress-system", false],
      ["get leases -n kube-system", false],
      ["create events -n default", false],
      ["patch egresspolicies.nftegress.io", false],
      ["update egresspolicies.nftegress.io", false],
      ["create egresspolicies.nftegress.io", false],
      ["delete egresspolicies.nftegress.io", false],
      ["create nodeegressreports.nftegress.io", false],
      ["patch nodeegressreports.nftegress.io", false],
      ["update nodeegressreports.nftegress.io", false],
      ["delete nodeegressreports.nftegress.io", false],
      ["patch egressaddresssets.nftegress.io", false],
      ["get secrets -n nftegress-system", false],
      ["list secrets --all-namespaces", false],
      ["update nodes", false],
    ]);
  });

  it("neither component reads Secrets, even by name in its own namespace", async () => {
    for (const who of [agentOn("node-a"), controller]) {
      denied(await cluster.kubectl(["-n", NAMESPACE, "get", "secret", "s", ...who]), RBAC_DENIED, "get secret");
      denied(await cluster.kubectl(["get", "secrets", "--all-namespaces", ...who]), RBAC_DENIED, "list secrets");
    }
  });

  it("the agent of node A creates and updates its own report by server-side apply", async () => {
    const agent = agentOn("node-a");
    const apply = ["apply", "--server-side", "--field-manager=nftegress-agent", "-f", "-", ...agent];
    ok(await cluster.kubectl(apply, report("node-a", uids.get("node-a") ?? "", 1)), "create own report");
    ok(await cluster.kubectl(apply, report("node-a", uids.get("node-a") ?? "", 2)), "update own report");
    ok(await cluster.kubectl(["patch", "nodeegressreport", "node-a", "--type=merge", "-p", '{"status":{"rulesetHash":"def"}}', ...agent]), "merge patch own report");
    const r = await cluster.kubectl(["get", "nodeegressreport", "node-a", "-o", "jsonpath={.status.rulesetHash} {.status.policies[0].denied.packets}"]);
    assert.equal(r.stdout, "def 2");
  });

  it("the agent of node A cannot create, change or delete node B's report", async () => {
    const agent = agentOn("node-a");
    const b = report("node-b", uids.get("node-b") ?? "");
    denied(await cluster.kubectl(["apply", "--server-side", "--field-manager=nftegress-agent", "-f", "-", ...agent], b), VAP_DENIED, "create node-b's report by apply");
    denied(await cluster.kubectl(["create", "-f", "-", ...agent], b), VAP_DENIED, "create node-b's report");
    ok(await cluster.kubectl(["create", "-f", "-"], b), "admin creates node-b's report");
    denied(await cluster.kubectl(["apply", "--server-side", "--field-manager=nftegress-agent", "--force-conflicts", "-f", "-", ...agent], report("node-b", uids.get("node-b") ?? "", 99)), VAP_DENIED, "apply to node-b's report");
    denied(await cluster.kubectl(["patch", "nodeegressreport", "node-b", "--type=merge", "-p", '{"status":{"rulesetHash":"forged"}}', ...agent]), VAP_DENIED, "patch node-b's report");
    denied(await cluster.kubectl(["delete", "nodeegressreport", "node-b", ...agent]), RBAC_DENIED, "delete node-b's report");
    const r = await cluster.kubectl(["get", "nodeegressreport", "node-b", "-o", "jsonpath={.status.rulesetHash}"]);
    assert.equal(r.stdout, "abc", "node-b's report is unchanged");
  });

  it("the admission policy stops a cross-node delete even where RBAC would allow it, and only the agent", async () => {
    const grant = JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "test-delete-reports" }, rules: [{ apiGroups: ["nftegress.io"], resources: ["nodeegressreports"], verbs: ["delete"] }] },
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", metadata: { name: "test-delete-reports" }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "test-delete-reports" }, subjects: [{ kind: "ServiceAccount", name: "nftegress-agent", namespace: NAMESPACE }] },
      ],
    });
    ok(await cluster.kubectl(["create", "-f", "-"], grant), "grant delete");
    try {
      const deadline = Date.now() + 10_000;
      while (!(await canI(agentOn("node-a"), ["delete", "nodeegressreports.nftegress.io"]))) {
        if (Date.now() > deadline) throw new Error("the RBAC grant never took effect");
        await sleep(100);
      }
      denied(await cluster.kubectl(["delete", "nodeegressreport", "node-b", ...agentOn("node-a")]), VAP_DENIED, "delete node-b's report with RBAC allowing it");
      ok(await cluster.kubectl(["delete", "nodeegressreport", "node-a", ...agentOn("node-a")]), "delete its own report");
    } finally {
      ok(await cluster.kubectl(["delete", "-f", "-"], grant), "revoke delete");
    }
    // A token without a node (not from a pod) may write no report at all.
    denied(await cluster.kubectl(["create", "-f", "-", ...agentOn()], report("node-a", uids.get("node-a") ?? "")), /denied request: the nftegress agent may write NodeEgressReports only with a service account token bound to a node/, "create without node binding");
    // The policy matches the agent's service account only: the cluster admin is not bound by it.
    ok(await cluster.kubectl(["delete", "nodeegressreport", "node-b"]), "admin deletes node-b's report");
  });

  it("the controller writes egresspolicies/status and nothing of the spec or the agents' reports", async () => {
    const status = JSON.stringify({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p" }, status: { observedGeneration: 1 } });
    ok(await cluster.kubectl(["apply", "--server-side", "--subresource=status", "--field-manager=nftegress-controller", "-f", "-", ...controller], status), "apply status");
    const r = await cluster.kubectl(["get", "egresspolicy", "p", "-o", "jsonpath={.status.observedGeneration}"]);
    assert.equal(r.stdout, "1");
    for (const who of [controller, agentOn("node-a")]) {
      denied(await cluster.kubectl(["patch", "egresspolicy", "p", "--type=merge", "-p", '{"spec":{"mode":"Enforce"}}', ...who]), RBAC_DENIED, "patch a policy's spec");
      denied(await cluster.kubectl(["apply", "--server-side", "--field-manager=x", "-f", "-", ...who], JSON.stringify({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p" }, spec: { mode: "Enforce" } })), RBAC_DENIED, "apply a policy's spec");
    }
    denied(await cluster.kubectl(["patch", "egresspolicy", "p", "--subresource=status", "--type=merge", "-p", '{"status":{"observedGeneration":7}}', ...agentOn("node-a")]), RBAC_DENIED, "the agent patches a status");
    denied(await cluster.kubectl(["create", "-f", "-", ...controller], report("node-a", uids.get("node-a") ?? "")), RBAC_DENIED, "the controller creates a report");
  });
});
