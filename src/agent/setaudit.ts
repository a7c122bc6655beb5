// The element audit's schedule: on each drift tick, a budget of elements rather than a number
// of sets, so that the time until every element has been checked grows with the number of
// elements, never with the number of sets (README, "Drift repair"):
// - While our sets together hold at most `budget` elements (default 100,000; the static sets'
//   elements plus the denial sets' entries the last such listing saw), one listing of every set
//   of our table (`nft -j list sets table`, one process however many sets) audits them all.
// - A larger table is listed one set at a time, in turn, as many sets per tick as fit in the
//   budget (a set larger than the budget alone).
// - Small tables (at most `unpaced` elements, default 10,000: a few tens of milliseconds of
//   listing) are audited on every tick. Otherwise the audit is paced so that listing costs
//   about a fixed share of one core (default 1 %): a tick whose listing took 400 ms (100k
//   elements) waits 40 s before the next. A tick that lists sets one at a time is charged for
//   their elements and one nft process: each further process costs a fixed start-up that is
//   not charged (estimated by the drift check's terse listing, which lists no elements: a few
//   milliseconds), so that the time to audit every element does not grow with the number of
//   sets; those start-ups are CPU beyond the share (a few milliseconds per set per round).
// What differs is put back by Syncer.auditSets; this only decides which sets and when.
import type { ElementDrift } from "../nft/elements.js";
import type { Syncer } from "./syncer.js";

export interface AuditRepair {
  set: string;
  drift: ElementDrift;
}

export interface SetAuditorOptions {
  /** Share of one core the audit may use, in percent (default 1). */
  dutyPercent?: number;
  /** Elements listed per tick at most, a larger set alone (default 100,000). */
  budget?: number;
  /** Tables of at most this many elements are audited on every tick, unpaced (default 10,000). */
  unpaced?: number;
  now?: () => number;
}

export const DEFAULT_AUDIT_BUDGET = 100_000;
export const DEFAULT_AUDIT_UNPACED = 10_000;

/** After a whole-table listing carried more denial-set entries than fit in the budget, this many
 *  ticks list the static sets one at a time (those listings do not carry the denial sets). */
const PER_SET_TICKS = 20;

export class SetAuditor {
  private cursor = 0;
  private nextAt = 0;
  /** Denial-set entries in the last whole-table listing. */
  private dynamicSeen = 0;
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
    if (this.perSetTicks > 0 && --this.perSetTicks === 0) this.dynamicSeen = 0;
    const whole = this.perSetTicks === 0 && total + this.dynamicSeen <= budget;
    const paced = !whole || total + this.dynamicSeen > (this.opts.unpaced ?? DEFAULT_AUDIT_UNPACED);
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
    let uncharged = 0;
    try {
      const result = await this.syncer.auditSets(batch, whole);
      if (!result) return [];
      const startup = Math.min(result.startupMs, ...result.listingMs);
      if (result.listingMs.length > 1 && Number.isFinite(startup)) uncharged = (result.listingMs.length - 1) * startup;
      if (whole) {
        this.dynamicSeen = result.dynamicElements;
        if (total + result.dynamicElements > budget) this.perSetTicks = PER_SET_TICKS;
      }
      const out: AuditRepair[] = [];
      for (const [set, drift] of result.drifts) if (drift.missing.length || drift.extra.length) out.push({ set, drift });
      return out;
    } finally {
      const spent = Math.max(0, now() - started - uncharged);
      this.nextAt = paced ? now() + spent * (100 / (this.opts.dutyPercent ?? 1) - 1) : 0;
    }
  }
}
