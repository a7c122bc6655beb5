// Makes the kernel's table equal to the compiled ruleset: plans full or incremental
// transactions, applies them atomically, cleans up stale objects, revokes flows to removed
// destinations, and repairs drift. All kernel access goes through the NftExecutor.
import type { NftExecutor } from "../nft/executor.js";
import { drift, parseTable, type TableListing } from "../nft/listing.js";
import { MemoryAllowedStore, type AllowedStore } from "../host/state.js";
import { planFull, planIncremental, type Existing, type Plan } from "../nft/plan.js";
import type { Ruleset } from "../nft/ruleset.js";
import { FAMILY, TABLE, render } from "../nft/transaction.js";
import type { Cidr } from "../net/cidr.js";
import { aggregate, hostMask } from "../net/cidr.js";
import type { CompiledPolicy } from "../policy/compile.js";

export interface SyncOutcome {
  /** suspended: we made the table dormant; dormant: someone else did, and we leave it so. */
  mode: Plan["mode"] | "suspended" | "dormant";
  changedElements: number;
  revokedFlows: number;
  /** What differed from the last applied state when this sync started (drift it repaired). */
  drift: string[];
  cleanupError?: string;
  durationMs: number;
}

function existingOf(l: TableListing | null): Existing {
  return l ? { chains: l.chains, sets: l.sets, counters: l.counters } : { chains: new Set(), sets: new Set(), counters: new Set() };
}

/** Destinations Enforce policies allow. */
export function allowedBy(policies: readonly CompiledPolicy[]): Cidr[] {
  return policies.filter((p) => p.mode === "Enforce").flatMap((p) => [...p.allowed.values()].flat());
}

/**
 * Previously allowed destinations that the new state no longer allows anywhere. Linear after
 * sorting: `after` is aggregated into disjoint ranges and each `before` prefix is looked up by
 * binary search (100k x 100k pairwise checks would take minutes).
 */
export function revokedDestinations(before: readonly Cidr[], after: readonly Cidr[]): Cidr[] {
  const ranges = new Map<4 | 6, [bigint, bigint][]>();
  for (const c of aggregate(after)) {
    const list = ranges.get(c.family) ?? [];
    list.push([c.addr, c.addr | hostMask(c.family, c.len)]);
    ranges.set(c.family, list);
  }
  const covered = (c: Cidr): boolean => {
    const list = ranges.get(c.family) ?? [];
    const lo = c.addr;
    const hi = c.addr | hostMask(c.family, c.len);
    let l = 0;
    let r = list.length - 1;
    while (l <= r) {
      const m = (l + r) >> 1;
      const range = list[m] as [bigint, bigint];
      if (range[1] < lo) l = m + 1;
      else if (range[0] > lo) r = m - 1;
      else return hi <= range[1];
    }
    return false;
  };
  const out = new Map<string, Cidr>();
  for (const c of before) if (!covered(c)) out.set(`${c.family}/${c.addr}/${c.len}`, c);
  return [...out.values()];
}

export class Syncer {
  private applied: Ruleset | null = null;
  /** What the applied state allows; null until known (then loaded from the store). */
  private appliedAllowed: Cidr[] | null = null;

  constructor(
    private readonly nft: NftExecutor,
    private readonly store: AllowedStore = new MemoryAllowedStore(),
  ) {}

  get current(): Ruleset | null {
    return this.applied;
  }

  private async listing(): Promise<TableListing | null> {
    const json = await this.nft.listTable(true);
    return json ? parseTable(json) : null;
  }

  /** True while the table is dormant because we were asked to suspend (break-glass). */
  private suspendedByUs = false;

  async sync(desired: Ruleset, policies: CompiledPolicy[], opts: { suspend?: boolean } = {}): Promise<SyncOutcome> {
    const started = performance.now();
    const dormant = await this.nft.isDormant();
    const quick = (mode: "suspended" | "dormant"): SyncOutcome => ({ mode, changedElements: 0, revokedFlows: 0, drift: [], durationMs: performance.now() - started });
    if (opts.suspend) {
      // Only the flag changes: rules, sets and counters stay for when the suspension ends.
      if (dormant !== true) await this.nft.apply(`add table ${FAMILY} ${TABLE} { flags dormant; }\n`);
      this.suspendedByUs = true;
      return quick("suspended");
    }
    if (dormant === true && !this.suspendedByUs) return quick("dormant");
    if (dormant === true) {
      // Resuming our own suspension: any `add table` without the flag clears it.
      await this.nft.apply(`add table ${FAMILY} ${TABLE}\n`);
      this.applied = null;
    }
    this.suspendedByUs = false;
    const kernel = await this.listing();
    const existing = existingOf(kernel);
    const drifted = this.applied === null ? [] : kernel === null ? ["table inet nftegress missing"] : drift(this.applied, kernel);
    const canDiff = this.applied !== null && kernel !== null && drifted.length === 0;
    // After a restart: what the table allowed comes from the state store, never from listing
    // the (possibly huge) sets. No store (first start, reboot): nothing to revoke.
    if (this.appliedAllowed === null) this.appliedAllowed = kernel ? (this.store.load() ?? []) : [];
    let plan = canDiff && this.applied ? planIncremental(this.applied, desired, existing) : planFull(desired, existing);
    try {
      if (plan.main.length) await this.nft.apply(render(plan.main));
    } catch (e) {
      if (plan.mode !== "incremental") throw e;
      // The kernel moved under us (or an element op failed): fall back to a full apply.
      plan = planFull(desired, existingOf(await this.listing()));
      await this.nft.apply(render(plan.main));
    }
    const prevAllowed = this.appliedAllowed;
    const nowAllowed = allowedBy(policies);
    this.applied = desired;
    this.appliedAllowed = nowAllowed;
    try {
      this.store.save(nowAllowed);
    } catch {
      // Revocation after a restart is best effort; enforcement does not depend on it.
    }
    const outcome: SyncOutcome = { mode: plan.mode, changedElements: plan.changedElements, revokedFlows: 0, drift: drifted, durationMs: 0 };
    if (plan.cleanup.length) {
      try {
        await this.nft.apply(render(plan.cleanup));
      } catch (e) {
        outcome.cleanupError = e instanceof Error ? e.message : String(e);
      }
    }
    const revoked = revokedDestinations(prevAllowed, nowAllowed);
    if (revoked.length) outcome.revokedFlows = await this.nft.deleteFlows(revoked);
    outcome.durationMs = performance.now() - started;
    return outcome;
  }

  /** Deletes our table: the state before the first apply. */
  async remove(): Promise<void> {
    if ((await this.nft.isDormant()) !== null) await this.nft.apply(`delete table ${FAMILY} ${TABLE}\n`);
    this.applied = null;
    this.appliedAllowed = [];
  }

  /** Re-reads the table (terse) and re-applies when it differs. Returns what differed. */
  async repairDrift(): Promise<string[]> {
    if (!this.applied || this.suspendedByUs) return [];
    if ((await this.nft.isDormant()) === true) return [];
    const kernel = await this.listing();
    const diffs = kernel ? drift(this.applied, kernel) : ["table inet nftegress missing"];
    if (diffs.length) {
      const plan = planFull(this.applied, existingOf(kernel));
      await this.nft.apply(render(plan.main));
      if (plan.cleanup.length) await this.nft.apply(render(plan.cleanup)).catch(() => undefined);
    }
    return diffs;
  }
}
