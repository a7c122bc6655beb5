// Writes this node's NodeEgressReport within the write budget (design s2): a change of applied
// generation or a failure at once; counter-only changes at most once per interval; nothing
// when nothing changed. Failed writes are retried with backoff and never block enforcement.
import type { Logger } from "pino";
import { API_VERSION } from "../api/common.js";
import { GUARD_ADDRESSES_SHOWN, type GuardReport, type NodeEgressReport, type PolicyReport } from "../api/report.js";
import { guardEntries, type Guard } from "../policy/guard.js";
import { Backoff } from "../kube/backoff.js";
import { FIELD_MANAGER_AGENT, kubeError, type KubeClient } from "../kube/client.js";
import type { AppliedPolicy } from "./counters.js";
import type { PolicyResult } from "./enforcer.js";

export interface NodeRef {
  name: string;
  uid: string;
}

/** The guard's entries, compact: name, ports, how many destinations and the first few. */
export function guardReport(guard: Guard): GuardReport[] {
  return guardEntries(guard)
    .slice(0, 80)
    .map((e) => ({
      name: e.name.slice(0, 64),
      ...(e.protocol ? { protocol: e.protocol } : {}),
      ...(e.ports ? { ports: e.ports.slice(0, 16) } : {}),
      destinations: e.destinations.length,
      ...(e.destinations.length ? { addresses: e.destinations.slice(0, GUARD_ADDRESSES_SHOWN) } : {}),
      ...(e.unresolved?.length ? { unresolved: e.unresolved.slice(0, GUARD_ADDRESSES_SHOWN) } : {}),
    }));
}

export function buildReport(node: NodeRef, results: readonly PolicyResult[], kernel: readonly AppliedPolicy[], rulesetHash: string, lastApplyTime: string, guard: Guard | null = null): NodeEgressReport {
  const byName = new Map(kernel.map((k) => [k.name, k]));
  const policies: PolicyReport[] = results.map((r) => {
    const k = byName.get(r.name);
    return {
      name: r.name,
      generation: r.generation,
      mode: r.mode,
      result: r.result,
      ...(r.message ? { message: r.message.slice(0, 1024) } : {}),
      denied: { packets: k?.denied.packets ?? 0, bytes: k?.denied.bytes ?? 0 },
      wouldDeny: { packets: k?.wouldDeny.packets ?? 0, bytes: k?.wouldDeny.bytes ?? 0 },
      topDeniedDestinations: (k?.topDeniedDestinations ?? []).map((d) => ({ address: d.address, protocol: d.protocol, packets: d.packets, ...(d.port !== undefined ? { port: d.port } : {}) })),
      deniedByUser: (k?.deniedByUser ?? []).map((u) => ({ uid: u.uid, packets: u.packets, ...(u.user ? { user: u.user } : {}) })),
    };
  });
  return {
    apiVersion: API_VERSION,
    kind: "NodeEgressReport",
    metadata: {
      name: node.name,
      ownerReferences: [{ apiVersion: "v1", kind: "Node", name: node.name, uid: node.uid }],
    },
    status: { rulesetHash, lastApplyTime, ...(guard ? { guard: guardReport(guard) } : {}), policies },
  } as NodeEgressReport;
}

/** The part of a report whose change must be written at once. */
function appliedSignature(r: NodeEgressReport): string {
  return JSON.stringify((r.status?.policies ?? []).map((p) => [p.name, p.generation, p.mode, p.result, p.message ?? ""]));
}

export class ReportWriter {
  private sentApplied = "";
  private sentAll = "";
  private lastWrite = 0;
  private pending: NodeEgressReport | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly backoff = new Backoff(1000, 60_000);
  private writing = false;
  writes = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  /** Offers the current report; writes now, later, or never, per the budget. */
  offer(report: NodeEgressReport): void {
    this.pending = report;
    void this.flush();
  }

  private schedule(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
    this.timer.unref();
  }

  private async flush(): Promise<void> {
    const report = this.pending;
    if (!report || this.writing) return;
    const all = JSON.stringify(report.status);
    if (all === this.sentAll) return;
    const urgent = appliedSignature(report) !== this.sentApplied;
    const wait = this.lastWrite + this.intervalMs - Date.now();
    if (!urgent && wait > 0) return this.schedule(wait);
    this.writing = true;
    try {
      await this.client.custom.patchClusterCustomObject(
        { group: "nftegress.io", version: "v1alpha1", plural: "nodeegressreports", name: report.metadata.name, body: report, fieldManager: FIELD_MANAGER_AGENT, force: true },
        this.client.serverSideApply(),
      );
      this.writes++;
      this.sentAll = all;
      this.sentApplied = appliedSignature(report);
      this.lastWrite = Date.now();
      this.backoff.reset();
    } catch (e) {
      const err = kubeError(e);
      const ms = this.backoff.next();
      this.log.warn({ code: err.code, error: err.message, retryMs: ms }, "writing the node report failed, will retry");
      this.schedule(ms);
    } finally {
      this.writing = false;
    }
    if (this.pending !== report) void this.flush();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
