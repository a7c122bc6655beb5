// Every metric of the agent in one place (names are a contract: design s4).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { AppliedPolicy } from "../agent/counters.js";

/** The values of nftegress_apply_total's result label. */
export const APPLY_RESULTS = ["success", "partial", "failure", "invalid"] as const;

export class AgentMetrics {
  readonly registry = new Registry();
  private snapshot: AppliedPolicy[] = [];

  readonly applyTotal = new Counter({
    name: "nftegress_apply_total",
    help: "Apply attempts by result (success; partial: applied without the policies the kernel refused; failure; invalid: a policy refused before nft).",
    labelNames: ["result"],
    registers: [this.registry],
  });
  readonly invalidObjects = new Gauge({
    name: "nftegress_invalid_objects",
    help: "Objects whose current version fails the agent's schema (their last good version, if any, stays enforced), by kind.",
    labelNames: ["kind"],
    registers: [this.registry],
  });
  readonly applyDuration = new Histogram({
    name: "nftegress_apply_duration_seconds",
    help: "Time from a changed input to the transaction committed in the kernel.",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({ name: "nftegress_drift_repairs_total", help: "Times the table differed from the applied state and was re-applied.", registers: [this.registry] });
  readonly rollbacks = new Counter({ name: "nftegress_rollbacks_total", help: "Applies rolled back because the node lost its API server.", registers: [this.registry] });
  readonly elements = new Gauge({ name: "nftegress_ruleset_elements", help: "Destination set elements in the applied ruleset.", registers: [this.registry] });
  readonly appliedGeneration = new Gauge({ name: "nftegress_policy_applied_generation", help: "Generation of each applied policy.", labelNames: ["policy"], registers: [this.registry] });
  readonly lastChange = new Gauge({ name: "nftegress_policy_last_change_timestamp_seconds", help: "When each policy last changed on this node.", labelNames: ["policy"], registers: [this.registry] });

  constructor() {
    // Every labelled counter at 0 from the start for each known label value (design s4), so
    // increase() sees the first failure.
    for (const result of APPLY_RESULTS) this.applyTotal.inc({ result }, 0);
    for (const kind of ["EgressPolicy", "EgressAddressSet"]) this.invalidObjects.set({ kind }, 0);
    const snap = () => this.snapshot;
    const fromKernel = (name: string, help: string, pick: (p: AppliedPolicy) => number) =>
      new Counter({
        name,
        help,
        labelNames: ["policy"],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const p of snap()) this.inc({ policy: p.name }, pick(p));
        },
      });
    fromKernel("nftegress_denied_packets_total", "Packets denied by each Enforce policy (kernel counter).", (p) => p.denied.packets);
    fromKernel("nftegress_denied_bytes_total", "Bytes denied by each Enforce policy (kernel counter).", (p) => p.denied.bytes);
    fromKernel("nftegress_would_deny_packets_total", "Packets an Audit policy would have denied (kernel counter).", (p) => p.wouldDeny.packets);
    fromKernel("nftegress_would_deny_bytes_total", "Bytes an Audit policy would have denied (kernel counter).", (p) => p.wouldDeny.bytes);
    // Top-K gauges, per policy: an Enforce policy's dynamic sets count its denials, an Audit
    // policy's its would-denies (compile.ts: one <policy>_deny chain, by the policy's mode).
    const topK = (destinations: string, uids: string, help: string, mode: "Enforce" | "Audit") => {
      new Gauge({
        name: destinations,
        help: `${help} packets of the top destinations, per policy (top-K of each ${mode} policy).`,
        labelNames: ["policy", "destination", "port", "protocol"],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const p of snap()) {
            if (p.mode !== mode) continue;
            for (const d of p.topDeniedDestinations) this.inc({ policy: p.name, destination: d.address, port: String(d.port ?? ""), protocol: d.protocol }, d.packets);
          }
        },
      });
      new Gauge({
        name: uids,
        help: `${help} packets by sending uid, per policy (top-K of each ${mode} policy).`,
        labelNames: ["policy", "uid", "user"],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const p of snap()) {
            if (p.mode !== mode) continue;
            for (const u of p.deniedByUser) this.inc({ policy: p.name, uid: String(u.uid), user: u.user ?? "" }, u.packets);
          }
        },
      });
    };
    topK("nftegress_denied_destination_packets", "nftegress_denied_packets_by_uid", "Denied", "Enforce");
    topK("nftegress_would_deny_destination_packets", "nftegress_would_deny_packets_by_uid", "Would-deny", "Audit");
  }

  setKernelSnapshot(policies: AppliedPolicy[]): void {
    this.snapshot = policies;
  }
}

/** Every metric of the controller. */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly reconciles = new Counter({ name: "nftegress_controller_reconcile_total", help: "Policy reconciles by result (unchanged, written, error).", labelNames: ["result"], registers: [this.registry] });
  readonly reconcileDuration = new Histogram({
    name: "nftegress_controller_reconcile_duration_seconds",
    help: "Time to reconcile one policy.",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({ name: "nftegress_controller_queue_depth", help: "Policies waiting to be reconciled.", registers: [this.registry] });
  readonly leader = new Gauge({ name: "nftegress_controller_leader", help: "1 while this replica holds the leader Lease.", registers: [this.registry] });
  readonly policyDenied = new Gauge({ name: "nftegress_policy_denied_packets", help: "Packets denied by a policy, summed over its nodes.", labelNames: ["policy"], registers: [this.registry] });
  readonly policyWouldDeny = new Gauge({ name: "nftegress_policy_would_deny_packets", help: "Packets an Audit policy would have denied, summed over its nodes.", labelNames: ["policy"], registers: [this.registry] });
  readonly policyNodes = new Gauge({ name: "nftegress_policy_nodes", help: "Selected nodes of a policy by state (applied, failed, pending, suspended).", labelNames: ["policy", "state"], registers: [this.registry] });

  constructor() {
    for (const result of ["unchanged", "written", "error"]) this.reconciles.inc({ result }, 0);
  }
}
