// The chart without a cluster: its CRDs are the project's, `helm lint --strict` passes for
// default and non-default values, values.schema.json rejects unknown and mistyped values,
// deploy/ is the chart rendered with default values, and the rendered objects ask for what the
// design allows and nothing more (agent: hostNetwork and NET_ADMIN only; controller: non-root).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { Failsafe } from "../../src/policy/guard.js";
import { ROOT } from "../support/exec.js";
import { CHART, DEPLOY, NAMESPACE, at, helm, renderDeploy, renderObjects, one, sets, type KubeObject } from "./support/tools.js";

const FULL = join(ROOT, "test", "helm", "fixtures", "values-full.yaml");
const MONITORING = ["--api-versions", "monitoring.coreos.com/v1"];

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort();
}

/** Keys whose value is a free-form map (labels, selectors, quantities): one leaf each. */
const MAPS = new Set(["commonLabels", "nodeSelector", "podAnnotations", "podLabels", "labels", "annotations", "requests", "limits"]);

/** Every leaf key path of values ("agent.metrics.port"); arrays and free-form maps are leaves. */
function leafPaths(v: unknown, prefix = ""): string[] {
  const key = prefix.slice(prefix.lastIndexOf(".") + 1);
  if (typeof v !== "object" || v === null || Array.isArray(v) || Object.keys(v).length === 0 || MAPS.has(key)) return [prefix];
  return Object.entries(v).flatMap(([k, x]) => leafPaths(x, prefix ? `${prefix}.${k}` : k));
}

function container(workload: KubeObject): Record<string, unknown> {
  const c = at(workload, "spec", "template", "spec", "containers", 0);
  assert.ok(c && typeof c === "object", `${workload.kind} has a container`);
  return c as Record<string, unknown>;
}

function envValue(workload: KubeObject, name: string): unknown {
  const env = at(container(workload), "env");
  const e = Array.isArray(env) ? env.find((x: unknown) => at(x, "name") === name) : undefined;
  return e === undefined ? undefined : (at(e, "value") ?? at(e, "valueFrom"));
}

describe("chart", () => {
  it("ships the project's CRDs in crds/, byte for byte", () => {
    const project = join(ROOT, "crds");
    const chart = join(CHART, "crds");
    assert.deepEqual(yamlFiles(chart), yamlFiles(project), "same files (make crds, then copy crds/*.yaml to charts/nftegress/crds/)");
    for (const f of yamlFiles(project)) {
      assert.equal(readFileSync(join(chart, f), "utf8"), readFileSync(join(project, f), "utf8"), `charts/nftegress/crds/${f} differs from crds/${f}: copy it over`);
    }
  });

  it("passes helm lint --strict with the default values", async () => {
    const r = await helm(["lint", "--strict", CHART]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it("passes helm lint --strict with non-default values for every key", async () => {
    const defaults = yaml.load(readFileSync(join(CHART, "values.yaml"), "utf8"));
    const full = yaml.load(readFileSync(FULL, "utf8"));
    const covered = new Set(leafPaths(full));
    const missing = leafPaths(defaults).filter((p) => !covered.has(p) && ![...covered].some((c) => c.startsWith(`${p}.`)));
    assert.deepEqual(missing, [], "test/helm/fixtures/values-full.yaml sets every key of values.yaml");
    for (const extra of [[], ["--set", "crds.templated=false"]]) {
      const r = await helm(["lint", "--strict", CHART, "-f", FULL, ...extra]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
  });

  it("rejects unknown and mistyped values (values.schema.json)", async () => {
    const cases: [string[], RegExp][] = [
      [sets({ bogus: 1 }), /additional properties 'bogus' not allowed/],
      [sets({ "agent.hostNetwork": false }), /at '\/agent': additional properties 'hostNetwork' not allowed/],
      [sets({ "agent.securityContext.privileged": true }), /at '\/agent': additional properties 'securityContext' not allowed/],
      [sets({ "controller.pdb.maxUnavailable": 1 }), /at '\/controller\/pdb': additional properties 'maxUnavailable' not allowed/],
      [sets({ "agent.host.extra": "/etc/shadow" }), /at '\/agent\/host': additional properties 'extra' not allowed/],
      [sets({ "agent.tolerations[0].operatr": "Exists" }), /additional properties 'operatr' not allowed/],
      [sets({ "controller.replicas": "two" }), /at '\/controller\/replicas'/],
      [sets({ "agent.metrics.port": 70000 }), /at '\/agent\/metrics\/port'/],
      [sets({ "agent.failsafe[0].name": "x", "agent.failsafe[0].protocol": "ICMP", "agent.failsafe[0].ports[0]": 1 }), /at '\/agent\/failsafe\/0\/protocol'/],
      [sets({ "image.digest": "latest" }), /at '\/image\/digest'/],
      [sets({ "agent.failsafe[0].name": "ntp", "agent.failsafe[0].protocol": "UDP", "agent.failsafe[0].ports[0]": 123 }), /at '\/agent\/failsafe\/0'/],
      [sets({ "agent.failsafe[0].name": "ntp", "agent.failsafe[0].protocol": "UDP", "agent.failsafe[0].ports[0]": 123, "agent.failsafe[0].to": "any" }), /at '\/agent\/failsafe\/0\/to'/],
      [sets({ "agent.host.timeConfig[0].path": "/etc/chrony", "agent.host.timeConfig[0].type": "Socket" }), /at '\/agent\/host\/timeConfig\/0\/type'/],
      [sets({ "agent.host.timeConfig[0].path": "/etc/chrony/../shadow", "agent.host.timeConfig[0].type": "File" }), /at '\/agent\/host\/timeConfig\/0\/path'/],
    ];
    for (const [args, message] of cases) {
      for (const cmd of [["template", "x", CHART], ["lint", "--strict", CHART]]) {
        const r = await helm([...cmd, ...args]);
        assert.notEqual(r.code, 0, `helm ${cmd[0]} ${args.join(" ")} must fail`);
        assert.match(r.stdout + r.stderr, message, `helm ${cmd[0]} ${args.join(" ")}`);
      }
    }
  });

  it("closes every object of values.schema.json (additionalProperties false, or a schema for map values)", () => {
    const schema: unknown = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8"));
    const open: string[] = [];
    const walk = (node: unknown, path: string): void => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}[${i}]`));
      if (typeof node !== "object" || node === null) return;
      const o = node as Record<string, unknown>;
      // `global` is the one exception: Helm hands a parent chart's globals to its subcharts.
      if (o["type"] === "object" && path !== "/properties/global") {
        const ap = o["additionalProperties"];
        if (!(ap === false || (typeof ap === "object" && ap !== null))) open.push(path);
      }
      for (const [k, v] of Object.entries(o)) walk(v, `${path}/${k}`);
    };
    walk(schema, "");
    assert.deepEqual(open, []);
  });

  it("deploy/ is the chart rendered with the default values (make manifests)", async () => {
    const want = await renderDeploy();
    assert.deepEqual(yamlFiles(DEPLOY), [...want.keys()].sort(), "files in deploy/");
    for (const [name, text] of want) {
      assert.equal(readFileSync(join(DEPLOY, name), "utf8"), text, `deploy/${name} is stale: run make manifests`);
    }
  });

  it("runs the agent with hostNetwork and NET_ADMIN only: not privileged, read-only, seccomp, every node", async () => {
    const objects = await renderObjects();
    const ds = one(objects, "DaemonSet", "nftegress-agent");
    const pod = at(ds, "spec", "template", "spec");
    const c = container(ds);
    assert.equal(at(pod, "hostNetwork"), true);
    assert.equal(at(pod, "dnsPolicy"), "ClusterFirstWithHostNet");
    assert.equal(at(pod, "hostPID"), undefined);
    assert.equal(at(pod, "hostIPC"), undefined);
    assert.deepEqual(at(c, "securityContext"), {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] },
    });
    assert.equal(at(pod, "securityContext", "seccompProfile", "type"), "RuntimeDefault");
    assert.deepEqual(at(pod, "tolerations"), [{ operator: "Exists" }]);
    assert.equal(at(pod, "priorityClassName"), "system-node-critical");
    assert.deepEqual(at(ds, "spec", "updateStrategy"), { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
    const grace = at(pod, "terminationGracePeriodSeconds");
    assert.ok(typeof grace === "number" && grace <= 30, "small termination grace period");
    assert.deepEqual(envValue(ds, "NODE_NAME"), { fieldRef: { fieldPath: "spec.nodeName" } });
    for (const probe of ["livenessProbe", "readinessProbe"]) {
      assert.equal(at(c, probe, "httpGet", "port"), "metrics");
      assert.equal(at(c, probe, "httpGet", "path"), probe === "livenessProbe" ? "/healthz" : "/readyz");
    }
    assert.deepEqual(at(c, "ports"), [{ name: "metrics", containerPort: 9469, protocol: "TCP" }]);
    const args = at(c, "args");
    assert.ok(Array.isArray(args));
    assert.equal(args[0], "agent");
    for (const a of ["--metrics-address=0.0.0.0:9469", "--passwd=/host/etc/passwd", "--group=/host/etc/group", "--resolv-conf=/host/etc/resolv.conf", "--time-root=/host", "--report-interval=60"]) {
      assert.ok(args.includes(a), `agent args include ${a}: ${args.join(" ")}`);
    }
    // Host paths: exactly these; read-only but for the agent's small state directory.
    const volumes = at(pod, "volumes");
    assert.ok(Array.isArray(volumes));
    const hostPaths = volumes.filter((v: unknown) => at(v, "hostPath") !== undefined).map((v: unknown) => [at(v, "name"), at(v, "hostPath", "path"), at(v, "hostPath", "type")]);
    assert.deepEqual(hostPaths, [
      ["host-passwd", "/etc/passwd", "File"],
      ["host-group", "/etc/group", "File"],
      ["host-resolv-conf", "/etc/resolv.conf", "File"],
      ["host-time-0", "/etc/chrony", "DirectoryOrCreate"],
      ["host-time-1", "/etc/systemd", "DirectoryOrCreate"],
      ["state", "/run/nftegress", "DirectoryOrCreate"],
      ["host-cgroup", "/sys/fs/cgroup", "Directory"],
    ]);
    const mounts = at(c, "volumeMounts");
    assert.ok(Array.isArray(mounts));
    const byName = new Map(mounts.map((m: unknown) => [at(m, "name"), m]));
    for (const [name, path] of [["host-passwd", "/host/etc/passwd"], ["host-group", "/host/etc/group"], ["host-resolv-conf", "/host/etc/resolv.conf"], ["host-time-0", "/host/etc/chrony"], ["host-time-1", "/host/etc/systemd"], ["host-cgroup", "/sys/fs/cgroup"]]) {
      assert.equal(at(byName.get(name), "mountPath"), path);
      assert.equal(at(byName.get(name), "readOnly"), true, `${name} is read-only`);
    }
    assert.equal(at(byName.get("state"), "mountPath"), "/run/nftegress", "the agent's --state-dir default");
    assert.equal(at(byName.get("state"), "readOnly"), undefined);
  });

  it("runs two controller replicas non-root, read-only, without capabilities, with a PDB and probes", async () => {
    const objects = await renderObjects();
    const d = one(objects, "Deployment", "nftegress-controller");
    const pod = at(d, "spec", "template", "spec");
    const c = container(d);
    assert.equal(at(d, "spec", "replicas"), 2);
    assert.equal(at(pod, "hostNetwork"), undefined);
    assert.deepEqual(at(pod, "securityContext"), { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: "RuntimeDefault" } });
    assert.deepEqual(at(c, "securityContext"), { privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
    assert.deepEqual(at(c, "ports"), [{ name: "metrics", containerPort: 9470, protocol: "TCP" }]);
    assert.equal(at(c, "livenessProbe", "httpGet", "path"), "/healthz");
    assert.equal(at(c, "readinessProbe", "httpGet", "path"), "/readyz");
    assert.deepEqual(envValue(d, "POD_NAMESPACE"), { fieldRef: { fieldPath: "metadata.namespace" } });
    assert.deepEqual(envValue(d, "POD_NAME"), { fieldRef: { fieldPath: "metadata.name" } });
    const args = at(c, "args");
    assert.ok(Array.isArray(args) && args[0] === "controller" && args.includes("--metrics-address=0.0.0.0:9470") && args.includes("--lease-name=nftegress-controller"));
    const pdb = one(objects, "PodDisruptionBudget", "nftegress-controller");
    assert.equal(at(pdb, "spec", "minAvailable"), 1);
    assert.deepEqual(at(pdb, "spec", "selector", "matchLabels"), at(d, "spec", "selector", "matchLabels"));
    assert.equal(one(objects, "Lease", "nftegress-controller").metadata.namespace, NAMESPACE);
    // Metrics Services select the pods of their component.
    assert.deepEqual(at(one(objects, "Service", "nftegress-controller-metrics"), "spec", "selector"), at(d, "spec", "selector", "matchLabels"));
    assert.deepEqual(at(one(objects, "Service", "nftegress-agent-metrics"), "spec", "selector"), at(one(objects, "DaemonSet"), "spec", "selector", "matchLabels"));
  });

  it("asks RBAC for no wildcard, no Secrets, no escalation verbs", async () => {
    for (const objects of [await renderObjects(), await renderObjects(["-f", FULL, ...MONITORING])]) {
      for (const role of objects.filter((o) => o.kind === "ClusterRole" || o.kind === "Role")) {
        const rules = at(role, "rules");
        assert.ok(Array.isArray(rules));
        for (const rule of rules) {
          const words = [at(rule, "verbs"), at(rule, "resources"), at(rule, "apiGroups")].flat().map(String);
          assert.ok(!words.includes("*"), `${role.kind}/${role.metadata.name}: no wildcard`);
          for (const bad of ["secrets", "configmaps", "pods", "escalate", "bind", "impersonate", "delete", "deletecollection"]) {
            assert.ok(!words.includes(bad), `${role.kind}/${role.metadata.name} does not mention ${bad}`);
          }
        }
      }
    }
  });

  it("sets the API server address for kube-proxy-free clusters in both components", async () => {
    const objects = await renderObjects(sets({ k8sServiceHost: "192.0.2.10", k8sServicePort: 6443 }));
    for (const w of [one(objects, "DaemonSet"), one(objects, "Deployment")]) {
      assert.equal(envValue(w, "KUBERNETES_SERVICE_HOST"), "192.0.2.10");
      assert.equal(envValue(w, "KUBERNETES_SERVICE_PORT"), "6443");
    }
    const defaults = await renderObjects(sets({ k8sServiceHost: "api.example.com" }));
    assert.equal(envValue(one(defaults, "DaemonSet"), "KUBERNETES_SERVICE_PORT"), "443");
    assert.equal(envValue(one(await renderObjects(), "DaemonSet"), "KUBERNETES_SERVICE_HOST"), undefined);
    const r = await helm(["template", "x", CHART, ...sets({ k8sServicePort: 6443 })]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /k8sServicePort needs k8sServiceHost/);
  });

  it("renders ServiceMonitors and PodMonitors only when enabled and monitoring.coreos.com/v1 is served", async () => {
    const kinds = (objects: KubeObject[]) => objects.filter((o) => o.apiVersion === "monitoring.coreos.com/v1").map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(kinds(await renderObjects(MONITORING)), [], "off by default");
    const both = sets({ "metrics.serviceMonitor.enabled": true, "metrics.podMonitor.enabled": true });
    assert.deepEqual(kinds(await renderObjects(both)), [], "not served: nothing, no error");
    assert.deepEqual(kinds(await renderObjects([...both, ...MONITORING])), [
      "PodMonitor/nftegress-agent",
      "PodMonitor/nftegress-controller",
      "ServiceMonitor/nftegress-agent",
      "ServiceMonitor/nftegress-controller",
    ]);
    const sm = one(await renderObjects([...sets({ "metrics.serviceMonitor.enabled": true, "metrics.serviceMonitor.labels.release": "prom" }), ...MONITORING]), "ServiceMonitor", "nftegress-agent");
    assert.equal(sm.metadata.labels?.["release"], "prom");
    assert.equal(at(sm, "spec", "endpoints", 0, "port"), "metrics");
    assert.equal(at(sm, "spec", "endpoints", 0, "relabelings", 0, "targetLabel"), "node");
  });

  it("ships the Grafana dashboard as an opt-in ConfigMap for the sidecar", async () => {
    assert.equal((await renderObjects()).filter((o) => o.kind === "ConfigMap").length, 0, "off by default");
    const cm = one(await renderObjects(sets({ "dashboards.enabled": true })), "ConfigMap", "nftegress-dashboard");
    assert.equal(cm.metadata.labels?.["grafana_dashboard"], "1");
    assert.equal(cm.metadata.namespace, NAMESPACE);
    const json = at(cm, "data", "nftegress.json");
    assert.equal(typeof json, "string");
    assert.deepEqual(JSON.parse(String(json)), JSON.parse(readFileSync(join(CHART, "dashboards", "nftegress.json"), "utf8")));
    const elsewhere = one(await renderObjects(sets({ "dashboards.enabled": true, "dashboards.namespace": "monitoring" })), "ConfigMap");
    assert.equal(elsewhere.metadata.namespace, "monitoring");
  });

  it("renders the CRDs as templates on request (crds.templated), kept on uninstall by default", async () => {
    assert.equal((await renderObjects()).filter((o) => o.kind === "CustomResourceDefinition").length, 0, "crds/ only by default");
    const files = new Map(yamlFiles(join(CHART, "crds")).map((f) => {
      const crd = yaml.load(readFileSync(join(CHART, "crds", f), "utf8")) as KubeObject;
      return [crd.metadata.name, crd];
    }));
    for (const keep of [true, false]) {
      const crds = (await renderObjects(sets({ "crds.templated": true, "crds.keep": keep }))).filter((o) => o.kind === "CustomResourceDefinition");
      assert.deepEqual(crds.map((c) => c.metadata.name).sort(), [...files.keys()].sort());
      for (const crd of crds) {
        const file = files.get(crd.metadata.name);
        assert.deepEqual(crd["spec"], file?.["spec"], `${crd.metadata.name}: same spec as crds/`);
        assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], keep ? "keep" : undefined);
        assert.equal(crd.metadata.labels?.["app.kubernetes.io/part-of"], "nftegress");
      }
    }
  });

  it("replaces the failsafe list from values with a file the agent accepts", async () => {
    const objects = await renderObjects(["-f", FULL]);
    const cm = one(objects, "ConfigMap", "fw-agent-failsafe");
    const list = Failsafe.parse(yaml.load(String(at(cm, "data", "failsafe.yaml"))));
    assert.equal(list.length, 4);
    const ds = one(objects, "DaemonSet", "fw-agent");
    const args = at(container(ds), "args");
    assert.ok(Array.isArray(args) && args.includes("--failsafe=/etc/nftegress/failsafe/failsafe.yaml"));
    for (const a of ["--time-root=/host", "--node-addresses=10.0.0.0/24", "--bgp-peers=10.0.0.1,10.0.0.2", "--revocation-mark=0x00ff0000"]) assert.ok(args.includes(a), `${a} in ${JSON.stringify(args)}`);
    const vols = at(ds, "spec", "template", "spec", "volumes");
    assert.ok(Array.isArray(vols) && vols.some((v: unknown) => at(v, "name") === "host-time-0" && at(v, "hostPath", "path") === "/etc/chrony.conf" && at(v, "hostPath", "type") === "File"));
    assert.ok(typeof at(ds, "spec", "template", "metadata", "annotations", "checksum/failsafe") === "string");
  });
});
