// The chart against a real kube-apiserver: `helm template` output for the default and for
// non-default values (templated CRDs, ServiceMonitor/PodMonitor, dashboard, failsafe list,
// overrides everywhere) passes a server-side dry run with strict field validation, and the
// plain manifests install with `kubectl apply -f deploy/`, idempotently. The uninstall cleanup
// DaemonSet of docs/ is valid too.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { startCluster, type Cluster } from "../kube/support/cluster.js";
import { DEPLOY, NAMESPACE, documents, sets, template } from "./support/tools.js";

const FIXTURES = join(ROOT, "test", "helm", "fixtures");

describe("helm template applied to a real API server", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
    for (const ns of [NAMESPACE, "monitoring"]) {
      const r = await cluster.kubectl(["create", "namespace", ns]);
      assert.equal(r.code, 0, r.stderr);
    }
    const crds = await cluster.kubectl(["apply", "-f", join(FIXTURES, "monitoring-crds.yaml")]);
    assert.equal(crds.code, 0, crds.stderr);
    const est = await cluster.kubectl(["wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com", "crd/podmonitors.monitoring.coreos.com"]);
    assert.equal(est.code, 0, est.stderr);
  });

  after(async () => {
    await cluster?.stop();
  });

  /** Server-side dry run of a rendered stream; every object must be accepted. */
  async function dryRun(rendered: string): Promise<string[]> {
    const objects = documents(rendered);
    assert.ok(objects.length > 0);
    const r = await cluster.kubectl(["apply", "--server-side", "--dry-run=server", "--field-manager=helm-test", "--validate=strict", "-f", "-"], rendered);
    assert.equal(r.code, 0, `server-side dry run failed:\n${r.stderr}`);
    const lines = r.stdout.trim().split("\n");
    assert.equal(lines.length, objects.length, r.stdout);
    assert.ok(lines.every((l) => l.endsWith("serverside-applied (server dry run)")), r.stdout);
    return lines;
  }

  it("accepts the default values", async () => {
    const lines = await dryRun(await template());
    for (const want of ["daemonset.apps/nftegress-agent", "deployment.apps/nftegress-controller", "validatingadmissionpolicy.admissionregistration.k8s.io/nftegress-agent-own-report", "validatingadmissionpolicybinding.admissionregistration.k8s.io/nftegress-agent-own-report", "lease.coordination.k8s.io/nftegress-controller"]) {
      assert.ok(lines.some((l) => l.startsWith(`${want} `)), `${want} in:\n${lines.join("\n")}`);
    }
  });

  it("accepts non-default values for every key, with the monitoring API served", async () => {
    const lines = await dryRun(await template(["-f", join(FIXTURES, "values-full.yaml"), "--api-versions", "monitoring.coreos.com/v1"]));
    for (const want of ["servicemonitor.monitoring.coreos.com/fw-agent", "podmonitor.monitoring.coreos.com/fw-controller", "configmap/fw-dashboard", "configmap/fw-agent-failsafe", "customresourcedefinition.apiextensions.k8s.io/egresspolicies.nftegress.io"]) {
      assert.ok(lines.some((l) => l.startsWith(`${want} `)), `${want} in:\n${lines.join("\n")}`);
    }
  });

  it("accepts the templated CRDs with the default values", async () => {
    await dryRun(await template(sets({ "crds.templated": true })));
  });

  it("accepts the uninstall cleanup DaemonSet of docs/", async () => {
    const r = await cluster.kubectl(["apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", join(ROOT, "docs", "uninstall-cleanup.yaml")]);
    assert.equal(r.code, 0, r.stderr);
  });

  it("installs from deploy/ with kubectl apply -f deploy/, and a second apply changes nothing", async () => {
    const first = await cluster.kubectl(["apply", "-f", DEPLOY]);
    assert.equal(first.code, 0, first.stderr);
    const second = await cluster.kubectl(["apply", "-f", DEPLOY]);
    assert.equal(second.code, 0, second.stderr);
    // kubectl re-sends a PodDisruptionBudget's selector (patchStrategy replace) as "configured"
    // without changing anything; kubectl diff tells the truth.
    const diff = await cluster.kubectl(["diff", "-f", DEPLOY]);
    assert.equal(diff.code, 0, `deploy/ differs from what is installed:\n${diff.stdout}${diff.stderr}`);
    const ds = await cluster.kubectl(["-n", NAMESPACE, "get", "daemonset/nftegress-agent", "deployment/nftegress-controller", "lease/nftegress-controller", "-o", "name"]);
    assert.equal(ds.code, 0, ds.stderr);
    const ns = await cluster.kubectl(["get", "namespace", NAMESPACE, "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"]);
    assert.equal(ns.stdout, "privileged");
  });
});
