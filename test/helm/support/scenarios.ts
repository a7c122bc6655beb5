// EgressPolicy statuses exactly as the controller computes them (src/controller/status.ts),
// for the rollout situations a GitOps health check must tell apart.
import { EgressPolicy } from "../../../src/api/policy.js";
import type { NodeEgressReport, PolicyReport } from "../../../src/api/report.js";
import type { NodeInfo } from "../../../src/controller/aggregate.js";
import { computeStatus } from "../../../src/controller/status.js";

export interface Scenario {
  name: string;
  /** The policy object as a health check reads it (metadata, spec, status). */
  object: EgressPolicy;
  /** What kstatus (Flux) must say. */
  kstatus: "InProgress" | "Current" | "Failed";
  /** What the Argo CD health check must say. */
  argo: "Progressing" | "Healthy" | "Degraded";
}

const NOW = new Date("2026-01-02T03:04:05Z");
const NODES: NodeInfo[] = ["node-a", "node-b", "node-c"].map((name) => ({ name, labels: { role: "app" } }));

function policy(generation: number, selector: Record<string, string> = { role: "app" }, addressSets: string[] = []): EgressPolicy {
  return EgressPolicy.parse({
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name: "app-baseline", generation, uid: "0c9f6a52-6f4e-4c1e-9d7c-1b2f3a4b5c6d" },
    spec: {
      nodeSelector: { matchLabels: selector },
      mode: "Enforce",
      rules: [{ name: "https", action: "Allow", to: { cidrs: ["198.51.100.0/24"], ...(addressSets.length ? { addressSets } : {}) }, ports: [{ protocol: "TCP", port: 443 }] }],
    },
  });
}

type Entry = Pick<PolicyReport, "generation" | "result"> & { message?: string };

function report(node: string, entry: Entry | undefined): NodeEgressReport {
  const policies: PolicyReport[] = entry
    ? [{ name: "app-baseline", mode: "Enforce", denied: { packets: 7, bytes: 420 }, wouldDeny: { packets: 0, bytes: 0 }, ...entry }]
    : [];
  return { apiVersion: "nftegress.io/v1alpha1", kind: "NodeEgressReport", metadata: { name: node }, status: { policies } };
}

function withStatus(p: EgressPolicy, reports: NodeEgressReport[], sets: string[] = []): EgressPolicy {
  const { status } = computeStatus({ policy: p, nodes: NODES, reports, addressSetNames: new Set(sets), now: NOW });
  return { ...p, status };
}

const applied = (g: number): Entry => ({ generation: g, result: "Applied" });

export function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  const allApplied = withStatus(policy(2), NODES.map((n) => report(n.name, applied(2))));
  out.push({ name: "every selected node applied the generation", object: allApplied, kstatus: "Current", argo: "Healthy" });
  out.push({
    name: "nodes still applying (Reconciling)",
    object: withStatus(policy(2), [report("node-a", applied(2)), report("node-b", applied(1))]),
    kstatus: "InProgress",
    argo: "Progressing",
  });
  out.push({
    name: "spec changed, the controller has not seen it yet",
    object: { ...allApplied, metadata: { ...allApplied.metadata, generation: 3 } },
    kstatus: "InProgress",
    argo: "Progressing",
  });
  out.push({
    name: "a node failed to apply (Stalled), others pending too",
    object: withStatus(policy(2), [report("node-a", applied(2)), report("node-b", { generation: 2, result: "Failed", message: 'unknown user "appuser" on this node' })]),
    kstatus: "Failed",
    argo: "Degraded",
  });
  out.push({
    name: "a node rolled the change back",
    object: withStatus(policy(2), NODES.map((n) => report(n.name, n.name === "node-c" ? { generation: 2, result: "RolledBack", message: "the API server was unreachable" } : applied(2)))),
    kstatus: "Failed",
    argo: "Degraded",
  });
  out.push({
    name: "a rule names an unknown EgressAddressSet",
    object: withStatus(policy(1, { role: "app" }, ["corp-mirrors"]), NODES.map((n) => report(n.name, applied(1)))),
    kstatus: "Failed",
    argo: "Degraded",
  });
  out.push({
    name: "the selector matches no node (Ready, said loudly)",
    object: withStatus(policy(1, { role: "db" }), []),
    kstatus: "Current",
    argo: "Healthy",
  });
  out.push({
    name: "a node is suspended by break-glass, the rest applied",
    object: withStatus(policy(2), NODES.map((n) => report(n.name, n.name === "node-b" ? { generation: 1, result: "Suspended" } : applied(2)))),
    kstatus: "Current",
    argo: "Healthy",
  });
  return out;
}
