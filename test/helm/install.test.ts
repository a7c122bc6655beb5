// helm install, upgrade and uninstall against a real kube-apiserver (no kubelet here: no pod
// runs, the objects are what is checked). The CRDs come from the chart's crds/ on the first
// install and become Established; an upgrade rolls a changed value out; switching to
// crds.templated takes the CRDs over (after the documented adoption step) and updates them;
// uninstall removes everything but the CRDs, as Helm documents; a new install adopts the kept
// CRDs.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { startCluster, type Cluster } from "../kube/support/cluster.js";
import type { Result } from "../support/exec.js";
import { fluxStatus } from "../support/gitops-health.js";
import { CHART, NAMESPACE, RELEASE, at, documents, helm, sets, type KubeObject } from "./support/tools.js";

const CRDS = ["egressaddresssets.nftegress.io", "egresspolicies.nftegress.io", "nodeegressreports.nftegress.io"];
/** Every kind the chart can create, for "is anything of the release left?". */
const NAMESPACED = "deployments,daemonsets,services,serviceaccounts,roles,rolebindings,leases,configmaps,secrets,poddisruptionbudgets";
const CLUSTER = "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings";

function ok(r: Result, what: string): string {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r.stdout;
}

describe("helm install, upgrade and uninstall", () => {
  let cluster: Cluster;
  const kubeconfig = (): string[] => ["--kubeconfig", cluster.kubeconfig];
  const release = (args: string[]) => helm([...args, "--namespace", NAMESPACE, ...kubeconfig()]);

  before(async () => {
    cluster = await startCluster();
    // The harness installs the CRDs; here they must come from the chart.
    ok(await cluster.kubectl(["delete", "crd", ...CRDS, "--wait=true", "--timeout=60s"]), "delete the harness' CRDs");
  });

  after(async () => {
    await cluster?.stop();
  });

  async function manifest(): Promise<KubeObject[]> {
    return documents(ok(await release(["get", "manifest", RELEASE]), "helm get manifest"));
  }

  async function crds(): Promise<KubeObject[]> {
    const out = ok(await cluster.kubectl(["get", "crd", ...CRDS, "-o", "json"]), "get crds");
    const items = at(JSON.parse(out), "items");
    assert.ok(Array.isArray(items));
    return items as KubeObject[];
  }

  async function leftovers(): Promise<string[]> {
    const selector = `app.kubernetes.io/instance=${RELEASE}`;
    const ns = ok(await cluster.kubectl(["get", NAMESPACED, "--all-namespaces", "-l", selector, "-o", "name"]), "get namespaced");
    const cl = ok(await cluster.kubectl(["get", CLUSTER, "-l", selector, "-o", "name"]), "get cluster-scoped");
    const releases = ok(await cluster.kubectl(["-n", NAMESPACE, "get", "secrets", "-l", "owner=helm", "-o", "name"]), "get release secrets");
    return `${ns}${cl}${releases}`.split("\n").filter(Boolean).sort();
  }

  it("installs: every object is created and the CRDs from crds/ are Established", async () => {
    const r = await release(["install", RELEASE, CHART, "--create-namespace"]);
    ok(r, "helm install");
    assert.match(r.stdout, /STATUS: deployed/);
    assert.match(r.stdout, /nftegress 0\.1\.0 is installed in namespace nftegress-system/, "NOTES.txt");
    const objects = await manifest();
    assert.ok(objects.length >= 15, `${objects.length} objects`);
    // kubectl get -f fails when any of them is missing.
    const got = ok(await cluster.kubectl(["get", "-f", "-", "-o", "name"], objects.map((o) => JSON.stringify(o)).join("\n")), "get every object of the release");
    assert.equal(got.trim().split("\n").length, objects.length);
    const installed = await crds();
    assert.deepEqual(fluxStatus(installed).map((v) => v.status), installed.map(() => "Current"), "every CRD Established (kstatus)");
    for (const crd of installed) {
      assert.equal(crd.metadata.annotations?.["meta.helm.sh/release-name"], undefined, "crds/ are not part of the release");
    }
    const vap = ok(await cluster.kubectl(["get", "validatingadmissionpolicybinding", "nftegress-agent-own-report", "-o", "jsonpath={.spec.policyName}"]), "get binding");
    assert.equal(vap, "nftegress-agent-own-report");
  });

  it("upgrades: a changed value reaches the objects", async () => {
    ok(await release(["upgrade", RELEASE, CHART, ...sets({ "controller.replicas": 3, "agent.reportInterval": 30 })]), "helm upgrade");
    const replicas = ok(await cluster.kubectl(["-n", NAMESPACE, "get", "deployment", "nftegress-controller", "-o", "jsonpath={.spec.replicas}"]), "get deployment");
    assert.equal(replicas, "3");
    const args = ok(await cluster.kubectl(["-n", NAMESPACE, "get", "daemonset", "nftegress-agent", "-o", "jsonpath={.spec.template.spec.containers[0].args}"]), "get daemonset");
    assert.ok((JSON.parse(args) as string[]).includes("--report-interval=30"), args);
    const history = JSON.parse(ok(await release(["history", RELEASE, "-o", "json"]), "helm history")) as { revision: number; status: string }[];
    assert.deepEqual(history.map((h) => [h.revision, h.status]), [[1, "superseded"], [2, "deployed"]]);
  });

  it("upgrades the CRDs once crds.templated takes them over (after the documented adoption step)", async () => {
    // An older CRD on the cluster: the Denied printer column is missing.
    ok(await cluster.kubectl(["patch", "crd", "egresspolicies.nftegress.io", "--type=json", "-p", '[{"op":"remove","path":"/spec/versions/0/additionalPrinterColumns/3"}]']), "drop a column");
    const columns = async () => ok(await cluster.kubectl(["get", "crd", "egresspolicies.nftegress.io", "-o", "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}"]), "columns");
    assert.equal(await columns(), "Mode Selected Applied Ready Status Age Priority Default Failed Pending Would-Deny");
    const templated = [...sets({ "crds.templated": true }), "--reuse-values"];
    // Without the adoption step Helm refuses to take over objects it did not create.
    const refused = await release(["upgrade", RELEASE, CHART, ...templated]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /exists and cannot be imported into the current release: invalid ownership metadata/);
    // The README's adoption step.
    ok(await cluster.kubectl(["label", "crd", ...CRDS, "app.kubernetes.io/managed-by=Helm"]), "label crds");
    ok(await cluster.kubectl(["annotate", "crd", ...CRDS, `meta.helm.sh/release-name=${RELEASE}`, `meta.helm.sh/release-namespace=${NAMESPACE}`]), "annotate crds");
    ok(await release(["upgrade", RELEASE, CHART, ...templated]), "helm upgrade --set crds.templated=true");
    assert.equal(await columns(), "Mode Selected Applied Denied Ready Status Age Priority Default Failed Pending Would-Deny", "the upgrade restored the CRD");
    const adopted = await crds();
    for (const crd of adopted) assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep");
    assert.deepEqual(fluxStatus(adopted).map((v) => v.status), adopted.map(() => "Current"));
    const replicas = ok(await cluster.kubectl(["-n", NAMESPACE, "get", "deployment", "nftegress-controller", "-o", "jsonpath={.spec.replicas}"]), "get deployment");
    assert.equal(replicas, "3", "--reuse-values kept the earlier change");
  });

  it("uninstalls: nothing but the CRDs is left", async () => {
    const objects = await manifest();
    const r = await release(["uninstall", RELEASE, "--wait", "--timeout=60s"]);
    ok(r, "helm uninstall");
    assert.match(r.stdout + r.stderr, /These resources were kept due to the resource policy/);
    assert.deepEqual(await leftovers(), []);
    for (const o of objects.filter((x) => x.kind !== "CustomResourceDefinition")) {
      const args = ["get", `${o.kind}.${o.apiVersion.includes("/") ? o.apiVersion.split("/")[0] : ""}`.replace(/\.$/, ""), o.metadata.name, "--ignore-not-found", "-o", "name"];
      const got = ok(await cluster.kubectl(o.metadata.namespace ? ["-n", o.metadata.namespace, ...args] : args), `get ${o.kind}`);
      assert.equal(got, "", `${o.kind}/${o.metadata.name} is gone`);
    }
    const kept = await crds();
    assert.deepEqual(fluxStatus(kept).map((v) => v.status), kept.map(() => "Current"), "the CRDs are kept, Established");
  });

  it("installs again over the kept CRDs (templated, --skip-crds) and uninstalls cleanly", async () => {
    ok(await release(["install", RELEASE, CHART, "--skip-crds", ...sets({ "crds.templated": true })]), "helm install --skip-crds");
    const objects = await manifest();
    assert.deepEqual(objects.filter((o) => o.kind === "CustomResourceDefinition").map((o) => o.metadata.name).sort(), CRDS);
    ok(await release(["uninstall", RELEASE, "--wait", "--timeout=60s"]), "helm uninstall");
    assert.deepEqual(await leftovers(), []);
    assert.equal((await crds()).length, 3);
  });
});
