// The element audit's schedule: one static set per drift tick, in turn, paced so that listing
// elements costs at most a fixed share of one core (default 1 %): an audit that took 270 ms
// (a 70k-element set) waits 27 s before the next; small sets are audited every tick. What
// differs is put back by Syncer.auditSet; this only decides which set and when.
import type { ElementDrift } from "../nft/elements.js";
import type { Syncer } from "./syncer.js";

export interface AuditRepair {
  set: string;
  drift: ElementDrift;
}

export interface SetAuditorOptions {
  /** Share of one core the audit may use, in percent (default 1). */
  dutyPercent?: number;
  now?: () => number;
}

export class SetAuditor {
  private cursor = 0;
  private nextAt = 0;

  constructor(
    private readonly syncer: Pick<Syncer, "staticSets" | "auditSet">,
    private readonly opts: SetAuditorOptions = {},
  ) {}

  /** Audits the next set when due; returns what it repaired, or null. */
  async tick(): Promise<AuditRepair | null> {
    const now = this.opts.now ?? (() => performance.now());
    if (now() < this.nextAt) return null;
    const sets = this.syncer.staticSets();
    if (!sets.length) return null;
    const name = sets[this.cursor++ % sets.length]?.name ?? "";
    const started = now();
    try {
      const drift = await this.syncer.auditSet(name);
      return drift && (drift.missing.length || drift.extra.length) ? { set: name, drift } : null;
    } finally {
      const spent = now() - started;
      this.nextAt = now() + spent * (100 / (this.opts.dutyPercent ?? 1) - 1);
    }
  }
}
