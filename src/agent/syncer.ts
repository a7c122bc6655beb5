// Makes the kernel's table equal to the compiled ruleset: plans full or incremental
// transactions, applies them atomically, cleans up stale objects and repairs drift. Revocation
// of established flows is part of each transaction (plan.ts withRecheck). All kernel access
// goes through the NftExecutor.
import type { NftExecutor } from "../nft/executor.js";
import { drift, sameComments, type ChainPrint, type TableListing } from "../nft/listing.js";
import { readTable } from "../nft/read.js";
import { planFull, planIncremental, withRecheck, type Existing, type Plan } from "../nft/plan.js";
import { elementDrift, listedElements, type ElementDrift } from "../nft/elements.js";
import type { Ruleset, SetSpec } from "../nft/ruleset.js";
import { FAMILY, TABLE, render, type Op } from "../nft/transaction.js";
import type { CounterValue } from "../nft/listing.js";
import { MemoryPolicyNames, type PolicyNameStore } from "../host/policynames.js";
import { kernelEpoch, markField, recheckObjects, withEpoch } from "../nft/recheck.js";
import { randomInt } from "node:crypto";

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


/** What one element audit found: per set audited, what differed; the denial sets' entries a
 *  whole-table listing carried; and how long each nft listing process took, in order. */
export interface AuditResult {
  drifts: Map<string, ElementDrift>;
  dynamicElements: number;
  listingMs: number[];
  /** The shortest terse listing of the ruleset seen (no set elements): about what starting one
   *  nft listing process costs, whatever it lists. Infinity before the first drift check. */
  startupMs: number;
}

export interface SyncOutcome {
  /** suspended: we made the table dormant; dormant: someone else did, and we leave it so. */
  mode: Plan["mode"] | "suspended" | "dormant";
  changedElements: number;
  /** What differed from the last applied state when this sync started (drift it repaired). */
  drift: string[];
  cleanupError?: string;
  /** The policies' names could not be saved (status then shows their ids). */
  namesError?: string;
  durationMs: number;
}

/** `desired` at the epoch of `applied` (mark layout), to plan against it; null when their
 *  layouts differ (a full sync then reads the kernel). */
function sameEpoch(desired: Ruleset, applied: Ruleset): Ruleset | null {
  if (!desired.recheckMark && !applied.recheckMark) return desired;
  if (!desired.recheckMark || !applied.recheckMark || desired.recheckMark.mask !== applied.recheckMark.mask) return null;
  return withEpoch(desired, applied.recheckMark.epoch);
}

/** Any epoch of the mask's field. */
function randomEpoch(mask: number): number {
  const f = markField(mask);
  return f ? randomInt(1, f.max + 1) : 1;
}

function existingOf(l: TableListing | null): Existing {
  return l ? { chains: l.chains, sets: l.sets, counters: l.counters } : { chains: new Set(), sets: new Set(), counters: new Set() };
}

/** What the kernel holds when it holds what we applied. */
function existingOfRuleset(r: Ruleset): Existing {
  return { chains: new Set(r.chains.map((c) => c.name)), sets: new Set(r.sets.map((x) => x.name)), counters: new Set(r.counters) };
}

/** The chains a transaction declares or refills: those whose listing changes with it. */
function writtenChains(plan: Plan): Set<string> {
  const out = new Set<string>();
  for (const op of plan.main) {
    if (op.object.type === "chain") out.add(op.object.name);
    else if (op.object.type === "rule") out.add(op.object.chain);
  }
  return out;
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
  private changes = 0;
  private pending = 0;
  /** The last drift check found the table dormant (an admin's flag): nothing to audit. */
  private dormantSeen = false;
  /** Per applied chain: what nft listed for it right after we wrote it (see ChainPrint). A
   *  drift check that lists something else under the same comments re-applies. */
  private readonly prints = new Map<string, ChainPrint>();
  /** See AuditResult.startupMs. */
  private startupMs = Number.POSITIVE_INFINITY;

  private exclusive<T>(fn: () => Promise<T>, changesState = true): Promise<T> {
    if (changesState) {
      this.changes++;
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

  /** The policy names last recorded (JSON), so an unchanged set is not written again. */
  private recordedNames: string | null = null;
  /** The store's names, read once and kept current by recordNames (status asks every 10 s). */
  private knownNames: Map<string, string> | null = null;

  constructor(
    private readonly nft: NftExecutor,
    private readonly names: PolicyNameStore = new MemoryPolicyNames(),
  ) {}

  /** Every policy name known by id: those of the applied rules and of the apply before. */
  policyNames(): ReadonlyMap<string, string> {
    this.knownNames ??= this.names.load();
    return this.knownNames;
  }

  /** Saves the names of the rules about to be applied, before they reach the kernel. */
  private recordNames(desired: Ruleset): string | undefined {
    if (!desired.policyNames) return undefined;
    const text = JSON.stringify(desired.policyNames);
    if (text === this.recordedNames) return undefined;
    try {
      this.names.record(desired.policyNames);
      this.recordedNames = text;
      this.knownNames = this.names.load();
      return undefined;
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
  }

  get current(): Ruleset | null {
    return this.applied;
  }

  sync(desired: Ruleset, opts: SyncOptions = {}): Promise<SyncOutcome> {
    return this.exclusive(() => this.syncNow(desired, opts));
  }

  private async syncNow(desired: Ruleset, opts: SyncOptions): Promise<SyncOutcome> {
    const started = performance.now();
    const namesError = this.recordNames(desired);
    const outcome = await this.syncKernel(desired, opts, started);
    return namesError ? { ...outcome, namesError } : outcome;
  }

  private async syncKernel(desired: Ruleset, opts: SyncOptions, started: number): Promise<SyncOutcome> {
    // Fast path: the kernel holds what we applied, so send only the difference, without
    // reading the table (a read lists every set element in nft 1.0.6). Changes made by others
    // are the drift timer's job; if the kernel moved, the transaction fails and we read below.
    const atEpoch = this.applied ? sameEpoch(desired, this.applied) : null;
    if (!opts.suspend && this.applied && atEpoch && !this.suspendedByUs) {
      const plan = withCounterValues(planIncremental(this.applied, atEpoch, existingOfRuleset(this.applied)), opts.restore);
      try {
        if (plan.main.length) await this.nft.apply(render(plan.main));
        return await this.finish(plan, [], started);
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
    // The mark layout goes on from the kernel's epoch (a table of another layout or none: a
    // random one, so that marks an earlier table left on flows are unlikely to be current).
    const known = desired.recheckMark && table.kind === "present" ? kernelEpoch(table.json, desired.recheckMark.mask) : null;
    const stamped = desired.recheckMark ? withEpoch(desired, known ?? randomEpoch(desired.recheckMark.mask)) : desired;
    const plan = withCounterValues(planFull(stamped, existingOf(kernel)), opts.restore);
    await this.nft.apply(render(plan.main));
    return this.finish(plan, drifted, started);
  }

  /** After a committed main transaction: remember what the kernel holds, delete stale objects. */
  private async finish(plan: Plan, drifted: string[], started: number): Promise<SyncOutcome> {
    const desired = plan.ruleset;
    this.applied = desired;
    const outcome: SyncOutcome = { mode: plan.mode, changedElements: plan.changedElements, drift: drifted, durationMs: 0 };
    await this.learn(desired, writtenChains(plan));
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

  /**
   * Remembers what nft lists for the chains a committed transaction just wrote (one terse
   * listing, a few milliseconds however large the sets; none when a change touched only set
   * elements). A chain whose listing does not carry our comments is not learned: the next drift
   * check repairs it and learns it then. Never fails the apply.
   */
  private async learn(desired: Ruleset, written: ReadonlySet<string>, listed?: TableListing): Promise<void> {
    const wanted = new Set(desired.chains.map((c) => c.name));
    for (const name of [...this.prints.keys()]) if (!wanted.has(name)) this.prints.delete(name);
    if (!written.size) return;
    let kernel = listed ?? null;
    if (!kernel) {
      try {
        kernel = (await this.listing()) ?? null;
      } catch {
        kernel = null;
      }
    }
    for (const c of desired.chains) {
      if (!written.has(c.name)) continue;
      const print = kernel?.prints.get(c.name);
      if (kernel && print && sameComments(c, kernel)) this.prints.set(c.name, print);
      else this.prints.delete(c.name);
    }
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
      this.prints.clear();
    });
  }

  /** The applied static sets (not the dynamic denial sets): what the element audit reads. */
  staticSets(): SetSpec[] {
    return this.applied?.sets.filter((s) => !s.dynamic) ?? [];
  }

  /** The element audit of one static set (see auditSets). */
  async auditSet(name: string): Promise<ElementDrift | null> {
    const r = await this.auditSets([name]);
    return r?.drifts.get(name) ?? null;
  }

  /**
   * The element audit of some static sets: lists their elements, each set alone (`nft -j list
   * set`, about 4 ms per 1,000 elements) or, with `whole`, all our sets in one `nft -j list sets
   * table` (one process however many sets; it carries the dynamic sets too, whose element count
   * it returns), and puts back what differs from the applied ones in one transaction. Per set
   * audited, what differed (a set not applied now, dynamic, or missing in the kernel is left
   * out: the terse drift check repairs a missing set). null when there is nothing to audit
   * (suspended or dormant) or when a sync, removal or drift repair ran during the listing
   * (audit again later).
   */
  async auditSets(names: readonly string[], whole = false): Promise<AuditResult | null> {
    const applied = this.applied;
    const specs = names.flatMap((n) => applied?.sets.filter((s) => s.name === n && !s.dynamic) ?? []);
    if (!applied || !specs.length || this.pending > 0 || this.suspendedByUs || this.dormantSeen) return null;
    const changes = this.changes;
    const drifts = new Map<string, ElementDrift>();
    let dynamicElements = 0;
    const listingMs: number[] = [];
    const timed = async <T>(list: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await list();
      } finally {
        listingMs.push(performance.now() - t0);
      }
    };
    const all = whole ? await timed(() => this.nft.listSets()) : null;
    if (whole) {
      const isStatic = new Set(this.staticSets().map((s) => s.name));
      for (const item of all?.nftables ?? []) {
        const set = item["set"];
        if (typeof set === "object" && set !== null && "name" in set && typeof set.name === "string" && !isStatic.has(set.name) && "elem" in set && Array.isArray(set.elem)) dynamicElements += set.elem.length;
      }
    }
    for (const spec of specs) {
      const listed = listedElements(all ?? (await timed(() => this.nft.listSet(spec.name))), spec.name);
      if (this.changes !== changes) return null;
      if (listed) drifts.set(spec.name, elementDrift(spec.elements, listed));
    }
    const ops: Op[] = [];
    for (const [name, d] of drifts) {
      if (d.extra.length) ops.push({ verb: "delete", object: { type: "element", set: name, elements: d.extra } });
      if (d.missing.length) ops.push({ verb: "add", object: { type: "element", set: name, elements: d.missing } });
    }
    const startupMs = this.startupMs;
    if (!ops.length) return { drifts, dynamicElements, listingMs, startupMs };
    return this.exclusive(async () => {
      if (this.changes !== changes) return null;
      const repair = withRecheck(applied, ops);
      await this.nft.apply(render(repair.main));
      if (repair.ruleset !== applied) {
        // The mark layout moved to the next epoch: its chains were rewritten.
        this.applied = repair.ruleset;
        await this.learn(repair.ruleset, new Set(recheckObjects(repair.ruleset.recheckMark).chains.map((c) => c.name)));
      }
      return { drifts, dynamicElements, listingMs, startupMs };
    }, false);
  }

  /** Re-reads the table (terse) and re-applies when it differs. Returns what differed. */
  repairDrift(): Promise<string[]> {
    return this.exclusive(() => this.repairDriftNow());
  }

  private async repairDriftNow(): Promise<string[]> {
    if (!this.applied || this.suspendedByUs) return [];
    const t0 = performance.now();
    const table = await readTable(this.nft);
    this.startupMs = Math.min(this.startupMs, performance.now() - t0);
    this.dormantSeen = table.kind === "dormant";
    if (this.dormantSeen) return [];
    const kernel = table.kind === "present" ? table.listing : null;
    const diffs = kernel ? drift(this.applied, kernel, this.prints) : ["table inet nftegress missing"];
    if (diffs.length) {
      const plan = planFull(this.applied, existingOf(kernel));
      // A base chain's hook or priority cannot change in place: one whose properties differ
      // from what we wrote is deleted and declared again, in the same transaction.
      const rebuild = this.applied.chains.filter((c) => {
        const want = this.prints.get(c.name)?.base;
        const have = kernel?.prints.get(c.name)?.base;
        return c.base && want !== undefined && have !== undefined && want !== have;
      });
      const recreate = rebuild.flatMap((c): Op[] => [
        { verb: "flush", object: { type: "chain", name: c.name } },
        { verb: "delete", object: { type: "chain", name: c.name } },
      ]);
      await this.nft.apply(render([...recreate, ...plan.main]));
      this.applied = plan.ruleset;
      await this.learn(this.applied, writtenChains(plan));
      if (plan.cleanup.length) await this.nft.apply(render(plan.cleanup)).catch(() => undefined);
    } else if (kernel) {
      // A chain whose print the apply could not learn (its listing failed): this listing
      // carries our comments, so it is the best there is.
      const unknown = new Set(this.applied.chains.filter((c) => !this.prints.has(c.name)).map((c) => c.name));
      if (unknown.size) await this.learn(this.applied, unknown, kernel);
    }
    return diffs;
  }
}
