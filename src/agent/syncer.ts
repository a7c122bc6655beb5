// Makes the kernel's table equal to the compiled ruleset: plans full or incremental
// transactions, applies them atomically, cleans up stale objects and repairs drift. Revocation
// of established flows is part of each transaction (plan.ts withRecheck). All kernel access
// goes through the NftExecutor.
import type { NftExecutor } from "../nft/executor.js";
import { drift, type TableListing } from "../nft/listing.js";
import { readTable } from "../nft/read.js";
import { planFull, planIncremental, withRecheck, type Existing, type Plan } from "../nft/plan.js";
import { elementDrift, listedElements, type ElementDrift } from "../nft/elements.js";
import type { Ruleset, SetSpec } from "../nft/ruleset.js";
import { FAMILY, TABLE, render, type Op } from "../nft/transaction.js";
import type { CounterValue } from "../nft/listing.js";

/** A commit-confirm rollback: the values the restored state's named counters had, for those the
 *  rolled-back change deleted (an existing counter keeps its own value). */
export interface Restore {
  counters: ReadonlyMap<string, CounterValue>;
}

export interface SyncOptions {
  suspend?: boolean;
  restore?: Restore;
}

/** Gives re-created counters their earlier values (nft ignores them for existing counters). */
function withCounterValues(plan: Plan, restore: Restore | undefined): Plan {
  if (!restore?.counters.size) return plan;
  const main = plan.main.map((op): Op => {
    if (op.verb !== "add" || op.object.type !== "counter") return op;
    const v = restore.counters.get(op.object.name);
    return v ? { verb: "add", object: { ...op.object, packets: v.packets, bytes: v.bytes } } : op;
  });
  return { ...plan, main };
}


export interface SyncOutcome {
  /** suspended: we made the table dormant; dormant: someone else did, and we leave it so. */
  mode: Plan["mode"] | "suspended" | "dormant";
  changedElements: number;
  /** What differed from the last applied state when this sync started (drift it repaired). */
  drift: string[];
  cleanupError?: string;
  durationMs: number;
}

function existingOf(l: TableListing | null): Existing {
  return l ? { chains: l.chains, sets: l.sets, counters: l.counters } : { chains: new Set(), sets: new Set(), counters: new Set() };
}

/** What the kernel holds when it holds what we applied. */
function existingOfRuleset(r: Ruleset): Existing {
  return { chains: new Set(r.chains.map((c) => c.name)), sets: new Set(r.sets.map((x) => x.name)), counters: new Set(r.counters) };
}

export class Syncer {
  private applied: Ruleset | null = null;
  /** True while the table is dormant because we were asked to suspend (break-glass). */
  private suspendedByUs = false;
  /** sync, remove, drift repair and the element audit's repair run one at a time. */
  private turn: Promise<unknown> = Promise.resolve();
  /** Counts the state-changing operations called (sync, remove, drift repair), and those not
   *  finished: an audit whose listing overlapped one is discarded, so it never "repairs" a
   *  sync's change away, and a sync never waits for an audit's listing. */
  private epoch = 0;
  private pending = 0;
  /** The last drift check found the table dormant (an admin's flag): nothing to audit. */
  private dormantSeen = false;

  private exclusive<T>(fn: () => Promise<T>, changesState = true): Promise<T> {
    if (changesState) {
      this.epoch++;
      this.pending++;
    }
    const go = async (): Promise<T> => {
      try {
        return await fn();
      } finally {
        if (changesState) this.pending--;
      }
    };
    const run = this.turn.then(go, go);
    this.turn = run.catch(() => undefined);
    return run;
  }

  constructor(private readonly nft: NftExecutor) {}

  get current(): Ruleset | null {
    return this.applied;
  }

  sync(desired: Ruleset, opts: SyncOptions = {}): Promise<SyncOutcome> {
    return this.exclusive(() => this.syncNow(desired, opts));
  }

  private async syncNow(desired: Ruleset, opts: SyncOptions): Promise<SyncOutcome> {
    const started = performance.now();
    // Fast path: the kernel holds what we applied, so send only the difference, without
    // reading the table (a read lists every set element in nft 1.0.6). Changes made by others
    // are the drift timer's job; if the kernel moved, the transaction fails and we read below.
    if (!opts.suspend && this.applied && !this.suspendedByUs) {
      const plan = withCounterValues(planIncremental(this.applied, desired, existingOfRuleset(this.applied)), opts.restore);
      try {
        if (plan.main.length) await this.nft.apply(render(plan.main));
        return await this.finish(plan, desired, [], started);
      } catch {
        // fall through to a full apply from what the kernel really holds
      }
    }
    const table = await readTable(this.nft);
    const quick = (mode: "suspended" | "dormant"): SyncOutcome => ({ mode, changedElements: 0, drift: [], durationMs: performance.now() - started });
    if (opts.suspend) {
      // Only the flag changes: rules, sets and counters stay for when the suspension ends.
      if (table.kind !== "dormant") await this.nft.apply(`add table ${FAMILY} ${TABLE} { flags dormant; }\n`);
      this.suspendedByUs = true;
      return quick("suspended");
    }
    if (table.kind === "dormant" && !this.suspendedByUs) return quick("dormant");
    let kernel = table.kind === "present" ? table.listing : null;
    if (table.kind === "dormant") {
      // Resuming our own suspension: any `add table` without the flag clears it.
      await this.nft.apply(`add table ${FAMILY} ${TABLE}\n`);
      this.applied = null;
      kernel = (await this.listing()) ?? null;
    }
    this.suspendedByUs = false;
    const drifted = this.applied === null ? [] : kernel === null ? ["table inet nftegress missing"] : drift(this.applied, kernel);
    const plan = withCounterValues(planFull(desired, existingOf(kernel)), opts.restore);
    await this.nft.apply(render(plan.main));
    return this.finish(plan, desired, drifted, started);
  }

  /** After a committed main transaction: remember it, delete stale objects. */
  private async finish(plan: Plan, desired: Ruleset, drifted: string[], started: number): Promise<SyncOutcome> {
    this.applied = desired;
    const outcome: SyncOutcome = { mode: plan.mode, changedElements: plan.changedElements, drift: drifted, durationMs: 0 };
    if (plan.cleanup.length) {
      try {
        await this.nft.apply(render(plan.cleanup));
      } catch (e) {
        outcome.cleanupError = e instanceof Error ? e.message : String(e);
      }
    }
    outcome.durationMs = performance.now() - started;
    return outcome;
  }

  private async listing(): Promise<TableListing | null> {
    const table = await readTable(this.nft);
    return table.kind === "present" ? table.listing : null;
  }

  /** Deletes our table: the state before the first apply. */
  remove(): Promise<void> {
    return this.exclusive(async () => {
      if ((await readTable(this.nft)).kind !== "absent") await this.nft.apply(`delete table ${FAMILY} ${TABLE}\n`);
      this.applied = null;
    });
  }

  /** The applied static sets (not the dynamic denial sets): what the element audit reads. */
  staticSets(): SetSpec[] {
    return this.applied?.sets.filter((s) => !s.dynamic) ?? [];
  }

  /**
   * The element audit of one static set: lists its elements (`nft -j list set`, about 4 ms per
   * 1,000) and puts back what differs from the applied ones in one transaction. null when
   * there is nothing to audit (no such set applied now, suspended or dormant, the set itself
   * missing: the terse drift check repairs that) or when a sync, removal or drift repair ran
   * during the listing (audit again later).
   */
  async auditSet(name: string): Promise<ElementDrift | null> {
    const applied = this.applied;
    const spec = applied?.sets.find((s) => s.name === name && !s.dynamic);
    if (!applied || !spec || this.pending > 0 || this.suspendedByUs || this.dormantSeen) return null;
    const epoch = this.epoch;
    const listed = listedElements(await this.nft.listSet(name), name);
    if (!listed || this.epoch !== epoch) return null;
    const d = elementDrift(spec.elements, listed);
    const ops: Op[] = [];
    if (d.extra.length) ops.push({ verb: "delete", object: { type: "element", set: name, elements: d.extra } });
    if (d.missing.length) ops.push({ verb: "add", object: { type: "element", set: name, elements: d.missing } });
    if (!ops.length) return d;
    return this.exclusive(async () => {
      if (this.epoch !== epoch) return null;
      await this.nft.apply(render(withRecheck(applied, ops)));
      return d;
    }, false);
  }

  /** Re-reads the table (terse) and re-applies when it differs. Returns what differed. */
  repairDrift(): Promise<string[]> {
    return this.exclusive(() => this.repairDriftNow());
  }

  private async repairDriftNow(): Promise<string[]> {
    if (!this.applied || this.suspendedByUs) return [];
    const table = await readTable(this.nft);
    this.dormantSeen = table.kind === "dormant";
    if (this.dormantSeen) return [];
    const kernel = table.kind === "present" ? table.listing : null;
    const diffs = kernel ? drift(this.applied, kernel) : ["table inet nftegress missing"];
    if (diffs.length) {
      const plan = planFull(this.applied, existingOf(kernel));
      await this.nft.apply(render(plan.main));
      if (plan.cleanup.length) await this.nft.apply(render(plan.cleanup)).catch(() => undefined);
    }
    return diffs;
  }
}
