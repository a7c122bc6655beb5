// The element audit's schedule: on each drift tick, a budget of elements rather than a number
// of sets. When all our static sets together hold at most the budget (default 20,000 elements),
// one listing of every set of our table (one nft process, however many sets) audits them all
// on that tick. Otherwise the sets are listed one at a time, in turn, as many per tick as fit in
// the budget (a set larger than the budget alone). Either way the audit is paced so that
// listing costs at most a fixed share of one core (default 1 %): a tick whose listings took
// 270 ms (a 70k-element set) waits 27 s before the next. So every element is checked within a
// time that grows with the number of elements, not of sets (README, "Drift repair"). What
// differs is put back by Syncer.auditSets; this only decides which sets and when.
import type { ElementDrift } from "../nft/elements.js";
import type { Syncer } from "./syncer.js";

export interface AuditRepair {
  set: string;
  drift: ElementDrift;
}

export interface SetAuditorOptions {
  /** Share of one core the audit may use, in percent (default 1). */
  dutyPercent?: number;
  /** Elements listed per tick (default 20,000, about 80 ms of listing). */
  budget?: number;
  now?: () => number;
}

export const DEFAULT_AUDIT_BUDGET = 20_000;

/** After a whole-table listing found more denial-set entries than the budget, this many ticks
 *  list the static sets one at a time (they do not carry the dynamic sets) before trying again. */
const PER_SET_TICKS = 20;

export class SetAuditor {
  private cursor = 0;
  private nextAt = 0;
  private perSetTicks = 0;

  constructor(
    private readonly syncer: Pick<Syncer, "staticSets" | "auditSets">,
    private readonly opts: SetAuditorOptions = {},
  ) {}

  /** Audits the next sets when due; returns what it repaired (empty: nothing differed or not due). */
  async tick(): Promise<AuditRepair[]> {
    const now = this.opts.now ?? (() => performance.now());
    if (now() < this.nextAt) return [];
    const sets = this.syncer.staticSets();
    if (!sets.length) return [];
    const budget = this.opts.budget ?? DEFAULT_AUDIT_BUDGET;
    const total = sets.reduce((n, s) => n + s.elements.length, 0);
    const whole = total <= budget && this.perSetTicks === 0;
    if (this.perSetTicks > 0) this.perSetTicks--;
    const batch: string[] = [];
    if (whole) batch.push(...sets.map((s) => s.name));
    else {
      let used = 0;
      for (let i = 0; i < sets.length; i++) {
        const s = sets[(this.cursor + i) % sets.length];
        if (!s || (batch.length && used + s.elements.length > budget)) break;
        batch.push(s.name);
        used += s.elements.length;
      }
      this.cursor = (this.cursor + batch.length) % sets.length;
    }
    const started = now();
    try {
      const result = await this.syncer.auditSets(batch, whole);
      if (!result) return [];
      if (whole && result.dynamicElements > budget) this.perSetTicks = PER_SET_TICKS;
      const out: AuditRepair[] = [];
      for (const [set, drift] of result.drifts) if (drift.missing.length || drift.extra.length) out.push({ set, drift });
      return out;
    } finally {
      const spent = now() - started;
      this.nextAt = now() + spent * (100 / (this.opts.dutyPercent ?? 1) - 1);
    }
  }
}
