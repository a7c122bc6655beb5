// GitOps health: the statuses the controller writes (src/controller/status.ts) mean the right
// thing to Flux (kstatus: InProgress while nodes converge, Current when all applied, Failed when
// Stalled) and to Argo CD through docs/argocd-health.lua, run here by the real lua5.4
// interpreter on the documented cases (docs/argocd-health/) and on freshly computed statuses.
// The Flux and Argo CD examples point at objects the chart really creates.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { ROOT } from "../support/exec.js";
import { argoHealth, kstatus, LUA_HEALTH } from "./support/health.js";
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

describe("Argo CD health check (docs/argocd-health.lua)", () => {
  it("passes every documented case", () => {
    const seen = new Set<string>();
    for (const c of loadCases()) {
      const obj = yaml.load(readFileSync(join(CASES, c.inputPath), "utf8"));
      assert.deepEqual(argoHealth(obj), c.healthStatus, c.inputPath);
      seen.add(c.healthStatus.status);
    }
    assert.deepEqual([...seen].sort(), ["Degraded", "Healthy", "Progressing"], "the cases cover every verdict");
  });

  it("uses nothing Argo CD's Lua 5.1 (gopher-lua) lacks", () => {
    const code = readFileSync(LUA_HEALTH, "utf8").replace(/--.*$/gm, "").replace(/"(?:[^"\\]|\\.)*"/g, '""');
    for (const [what, re] of [["integer division", /\/\//], ["bitwise operators", /[&|~](?!=)|<<|>>/], ["goto", /\bgoto\b/], ["attributes", /<(const|close)>/], ["utf8 library", /\butf8\./], ["math.tointeger", /math\.tointeger/]] as const) {
      assert.doesNotMatch(code, re, `no ${what}`);
    }
  });
});

describe("statuses written by the controller", () => {
  for (const s of scenarios()) {
    it(`${s.name}: Flux ${s.kstatus}, Argo CD ${s.argo}`, () => {
      const k = kstatus(s.object);
      assert.equal(k.status, s.kstatus, k.message);
      const a = argoHealth(s.object);
      assert.equal(a.status, s.argo, a.message);
      assert.equal(ARGO_OF_KSTATUS[s.kstatus], s.argo, "Flux and Argo CD agree");
      assert.ok(a.message.length > 0, "Argo CD shows a message");
      if (s.kstatus === "Failed") {
        // The reason a GitOps sync fails is the Stalled condition's message, in both tools.
        const stalled = s.object.status?.conditions?.find((c) => c.type === "Stalled");
        assert.equal(k.message, stalled?.message);
        assert.equal(a.message, stalled?.message);
      }
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
      assert.equal(kstatus(fresh).status, "InProgress");
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
