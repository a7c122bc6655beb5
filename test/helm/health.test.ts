// GitOps health: the statuses the controller computes (src/controller/status.ts) mean the right
// thing to Flux (kstatus: InProgress while nodes converge, Current when all applied, Failed when
// Stalled) and to Argo CD through docs/argocd-health.lua, both judged by their own code through
// hack/gitops-health: the Lua in gopher-lua with only Argo CD's libraries, and cli-utils'
// kstatus Compute. The documented cases (docs/argocd-health/) and freshly computed statuses are
// checked here; test/kube/gitops-health.test.ts does the same on what the real controller
// writes through a real API server. The Flux and Argo CD examples point at objects the chart
// really creates.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import yaml from "js-yaml";
import { ROOT } from "../support/exec.js";
import { judge, verdicts } from "../support/gitops-health.js";
import { scenarios } from "./support/scenarios.js";
import { DEPLOY, at, documents, one, type KubeObject } from "./support/tools.js";

const CASES = join(ROOT, "docs", "argocd-health");
const ARGO_OF_KSTATUS = { InProgress: "Progressing", Current: "Healthy", Failed: "Degraded" } as const;

interface HealthCase {
  healthStatus: { status: string; message: string };
  inputPath: string;
}

function loadCases(): HealthCase[] {
  const doc = yaml.load(readFileSync(join(CASES, "health_test.yaml"), "utf8"));
  const tests = at(doc, "tests");
  assert.ok(Array.isArray(tests) && tests.length > 0, "docs/argocd-health/health_test.yaml has tests");
  return tests as HealthCase[];
}

/** Runs a throwaway Lua health script (as argocd-cm would hold it) on obj. */
function withScript<T>(lua: string, f: (path: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), "nftegress-lua-"));
  try {
    const path = join(dir, "health.lua");
    writeFileSync(path, lua);
    return f(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("Argo CD health check (docs/argocd-health.lua)", () => {
  it("passes every documented case, and Flux agrees wherever the object has a status", () => {
    const seen = new Set<string>();
    const cases = loadCases();
    const objects = cases.map((c) => yaml.load(readFileSync(join(CASES, c.inputPath), "utf8")));
    const judged = judge(objects);
    cases.forEach((c, i) => {
      const j = judged[i];
      assert.ok(j && !("error" in j) && j.argo, c.inputPath);
      assert.deepEqual(j.argo, c.healthStatus, c.inputPath);
      seen.add(c.healthStatus.status);
      // Without any status (not what the API server returns: the CRD defaults one) kstatus has
      // nothing to go on and says Current; the script waits for the controller instead.
      if (at(objects[i], "status") !== undefined) assert.equal(ARGO_OF_KSTATUS[j.flux.status as keyof typeof ARGO_OF_KSTATUS], j.argo.status, `${c.inputPath}: Flux ${j.flux.status}`);
    });
    assert.deepEqual([...seen].sort(), ["Degraded", "Healthy", "Progressing"], "the cases cover every verdict");
  });

  it("runs with exactly Argo CD's libraries: base, package, table, and os only through require", () => {
    const probe = `local hs = {}
hs.status = "Healthy"
hs.message = "string=" .. type(string) .. " math=" .. type(math) .. " os=" .. type(os) .. " io=" .. type(io)
  .. " coroutine=" .. type(coroutine) .. " debug=" .. type(debug) .. " table.insert=" .. type(table.insert)
  .. " require(os).time=" .. type(require("os").time) .. " require(os).exit=" .. type(require("os").exit)
  .. " generation=" .. obj.metadata.generation
return hs`;
    const v = withScript(probe, (path) => verdicts({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x", generation: 2 } }, path));
    assert.deepEqual(v.argo, {
      status: "Healthy",
      message: "string=nil math=nil os=nil io=nil coroutine=nil debug=nil table.insert=function require(os).time=function require(os).exit=nil generation=2",
    });
  });

  it("a failing script is Unknown with the Lua error, as Argo CD shows it (string.format has no library there)", () => {
    const v = withScript('local hs = {}\nhs.status = "Healthy"\nhs.message = string.format("%d", 1)\nreturn hs\n', (path) => verdicts({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" } }, path));
    assert.deepEqual(v.argo, { status: "Unknown", message: "<string>:3: attempt to index a non-table object(nil) with key 'format'" });
    const bad = withScript('return {status = "Fine", message = "x"}', (path) => verdicts({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "x" } }, path));
    assert.deepEqual(bad.argo, { status: "Unknown", message: "Lua returned an invalid health status" });
  });

  it("never fails on malformed statuses, and says what it waits for", () => {
    const base = { apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p", generation: 2 } };
    const bad: [string, unknown, string, string][] = [
      ["no status", {}, "Progressing", "Waiting for the nftegress controller to report a status"],
      ["status not an object", { status: "x" }, "Progressing", "Waiting for the nftegress controller to report a status"],
      ["conditions not a list", { status: { observedGeneration: 2, conditions: "Ready" } }, "Progressing", "Waiting for the Ready condition"],
      ["observedGeneration a string", { status: { observedGeneration: "2", conditions: [] } }, "Progressing", "Waiting for the nftegress controller to observe generation 2"],
      ["conditions without fields", { status: { observedGeneration: 2, conditions: [{}, "x", { type: "Stalled", status: "True" }] } }, "Degraded", "Stalled"],
      ["Ready without a message", { status: { observedGeneration: 2, conditions: [{ type: "Ready", status: "True", reason: "Applied" }] } }, "Healthy", "Applied"],
      ["Ready=True, nothing selected, no message", { status: { observedGeneration: 2, nodes: { selected: 0 }, conditions: [{ type: "Ready", status: "True" }] } }, "Healthy", "selects no node: spec.nodeSelector matches no node, this policy is enforced nowhere"],
    ];
    const judged = judge(bad.map(([, extra]) => ({ ...base, ...(extra as object) })));
    bad.forEach(([name, , status, message], i) => {
      const j = judged[i];
      assert.ok(j && !("error" in j), name);
      assert.deepEqual(j.argo, { status, message }, name);
    });
    const [notObject] = judge([{ spec: {} }]);
    assert.ok(notObject && "error" in notObject, "an object without kind is refused");
  });
});

describe("statuses computed by the controller", () => {
  for (const s of scenarios()) {
    it(`${s.name}: Flux ${s.kstatus}, Argo CD ${s.argo}`, () => {
      const { argo, flux } = verdicts(s.object);
      assert.equal(flux.status, s.kstatus, flux.message);
      assert.equal(argo.status, s.argo, argo.message);
      assert.equal(ARGO_OF_KSTATUS[s.kstatus], s.argo, "Flux and Argo CD agree");
      assert.ok(argo.message.length > 0, "Argo CD shows a message");
      if (s.kstatus === "Failed") {
        // The reason a GitOps sync fails is the Stalled condition's message, in both tools.
        const stalled = s.object.status?.conditions?.find((c) => c.type === "Stalled");
        assert.equal(flux.message, stalled?.message);
        assert.equal(argo.message, stalled?.message);
      }
      if (s.object.status?.nodes?.selected === 0) assert.match(argo.message, /^selects no node: /);
    });
  }

  it("orders the conditions Ready, Stalled, Reconciling (kstatus takes the first of Reconciling or Stalled)", () => {
    for (const s of scenarios()) {
      assert.deepEqual(s.object.status?.conditions?.map((c) => c.type), ["Ready", "Stalled", "Reconciling"], s.name);
    }
  });

  it(
    "a new EgressPolicy is InProgress for Flux before the controller's first status (the CRD defaults status.observedGeneration to 0)",
    () => {
      const crd = yaml.load(readFileSync(join(ROOT, "crds", "nftegress.io_egresspolicies.yaml"), "utf8"));
      const status = at(crd, "spec", "versions", 0, "schema", "openAPIV3Schema", "properties", "status");
      assert.deepEqual(at(status, "default"), {});
      assert.equal(at(status, "properties", "observedGeneration", "default"), 0);
      const fresh = { apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p", generation: 1 }, status: { observedGeneration: 0 } };
      const { argo, flux } = verdicts(fresh);
      assert.equal(flux.status, "InProgress");
      assert.deepEqual(argo, { status: "Progressing", message: "Waiting for the nftegress controller to report a status" });
    },
  );
});

describe("GitOps examples", () => {
  const deployed = (): KubeObject[] => documents(readFileSync(join(DEPLOY, "02-nftegress.yaml"), "utf8"));

  it("Flux: health-checks the agent DaemonSet and the controller Deployment that deploy/ creates, then waits for every policy", () => {
    const docs = documents(readFileSync(join(ROOT, "docs", "flux", "nftegress.yaml"), "utf8"));
    const operator = one(docs, "Kustomization", "nftegress");
    assert.equal(at(operator, "spec", "path"), "./deploy");
    assert.ok(existsSync(DEPLOY));
    const checks = at(operator, "spec", "healthChecks");
    assert.ok(Array.isArray(checks) && checks.length === 2);
    const objects = deployed();
    for (const c of checks) {
      const target = one(objects, String(at(c, "kind")), String(at(c, "name")));
      assert.equal(target.metadata.namespace, at(c, "namespace"));
      assert.equal(target.apiVersion, at(c, "apiVersion"));
    }
    const policies = one(docs, "Kustomization", "egress-policies");
    assert.deepEqual(at(policies, "spec", "dependsOn"), [{ name: "nftegress" }]);
    assert.equal(at(policies, "spec", "wait"), true, "kstatus health of every applied EgressPolicy");
  });

  it("Argo CD: the Application installs charts/nftegress with server-side apply into a privileged namespace", () => {
    const app = one(documents(readFileSync(join(ROOT, "docs", "argocd", "application.yaml"), "utf8")), "Application");
    assert.ok(existsSync(join(ROOT, String(at(app, "spec", "source", "path")), "Chart.yaml")));
    assert.equal(at(app, "spec", "destination", "namespace"), one(deployed(), "DaemonSet").metadata.namespace);
    const options = at(app, "spec", "syncPolicy", "syncOptions");
    assert.ok(Array.isArray(options) && options.includes("ServerSideApply=true") && options.includes("CreateNamespace=true"));
    assert.equal(at(app, "spec", "syncPolicy", "managedNamespaceMetadata", "labels", "pod-security.kubernetes.io/enforce"), "privileged");
  });
});
