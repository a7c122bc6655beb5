// The agent's core, shared by the standalone and the in-cluster agent: compiles the policies
// that select this node (a policy refused on this node keeps its last good version), applies
// them through the Syncer, repairs drift, reads counters, and keeps the metrics.
import type { PolicyNameStore } from "../host/policynames.js";
import type { Logger } from "pino";
import type { EgressAddressSet } from "../api/addressset.js";
import type { LabelSelector } from "../api/common.js";
import type { EgressPolicy } from "../api/policy.js";
import { build, type BuildOptions } from "./build.js";
import { FqdnResolver } from "../host/fqdns.js";
import { readIdentities, userNames } from "../host/identities.js";
import { AgentMetrics } from "../metrics/metrics.js";
import type { NftExecutor } from "../nft/executor.js";
import { NftTransactionError } from "../nft/errors.js";
import { elementCount, rulesetHash, type Ruleset } from "../nft/ruleset.js";
import type { CompiledPolicy, CompileIssue } from "../policy/compile.js";
import { DestinationCompiler } from "../policy/destinations.js";
import type { Endpoint, Guard } from "../policy/guard.js";
import { selects } from "../policy/selector.js";
import type { Origin } from "../source/documents.js";
import { checkScript, isolate } from "./isolate.js";
import { readStatus, type AppliedPolicy } from "./counters.js";
import { cgroupPaths, fqdnNames, timeNames } from "./inputs.js";
import { SetAuditor } from "./setaudit.js";
import { Syncer, type SyncOutcome } from "./syncer.js";
import { counterValues, snapshotTable } from "./seed.js";
import type { RulesetStore } from "../host/confirmed.js";
import type { CounterValue } from "../nft/listing.js";

export interface DesiredState {
  policies: EgressPolicy[];
  addressSets: EgressAddressSet[];
  nodeLabels: Record<string, string>;
  apiServers: Endpoint[];
  /** The node's own pod CIDRs, kept open by the guard. */
  localPods?: string[];
  /** The cluster's node addresses: where the guard's overlay entries (`to: nodes`) go. */
  nodeAddresses?: readonly string[];
  origins?: ReadonlyMap<string, Origin>;
  /** Break-glass: why enforcement is suspended (node annotation, suspend file), if it is. */
  suspend?: string;
  /** Policies whose current version fails the agent's schema. When `policies` still holds an
   *  earlier version of one (same object), that version stays enforced; either way the
   *  current one is reported Failed with the reason. */
  invalid?: readonly InvalidPolicy[];
}

export interface InvalidPolicy {
  name: string;
  generation: number;
  /** Why the schema refuses it (one line). */
  error: string;
  /** Its node selector when that part still parses; without one it is reported on every node. */
  nodeSelector?: LabelSelector;
  mode?: "Audit" | "Enforce";
}

/** What a policy's last good version is kept under: a deleted and recreated object (a new
 *  uid in the cluster) never inherits it. Files have no uid: their name, pruned when the
 *  policy leaves the directory. */
export function lastGoodKey(p: EgressPolicy): string {
  return p.metadata.uid ? `uid:${p.metadata.uid}` : `name:${p.metadata.name}`;
}

export interface PolicyResult {
  name: string;
  generation: number;
  mode: "Audit" | "Enforce";
  result: "Applied" | "Failed" | "Suspended" | "RolledBack";
  message?: string;
}

export interface EnforceResult {
  ok: boolean;
  applied: CompiledPolicy[];
  /** One entry per selected policy: what this node did with its current generation. */
  results: PolicyResult[];
  outcome?: SyncOutcome;
  error?: string;
}

function issueLine(e: CompileIssue): string {
  const path = e.path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${p}` : p), "");
  return `${path}: ${e.message}`;
}

/**
 * Commit-confirmed: after a change is applied, the node must still reach its API server
 * within the deadline, or the previous ruleset is restored (in one transaction) and the change
 * reported RolledBack. The same desired state is not tried again until retryMs has passed.
 * Before the first change the previous ruleset is the kernel's table as the agent found it
 * (src/agent/seed.ts): a restarted agent restores the table of the agent before it, and
 * removes the table only when there was none.
 */
export interface Confirmation {
  check(): Promise<boolean>;
  deadlineMs: number;
  intervalMs: number;
  retryMs: number;
  /** Where each confirmed ruleset's structure is kept for the next agent (see seed.ts). */
  saved?: RulesetStore;
}

interface Confirmed {
  /** null: there was no table before the first apply. */
  ruleset: Ruleset | null;
  /** Set when the table found at start cannot be rebuilt: a rollback then keeps the change. */
  unknown?: string;
  policies: CompiledPolicy[];
  hash: string;
  /** Its named counters' values, read before a change that deletes some of them. */
  counters: Map<string, CounterValue>;
}

export class Enforcer {
  readonly metrics = new AgentMetrics();
  readonly syncer: Syncer;
  /** Audits the static sets' elements, a budget of elements per drift check (see setaudit.ts). */
  private readonly auditor: SetAuditor;
  readonly resolver = new FqdnResolver();
  private readonly lastGood = new Map<string, EgressPolicy>();
  private readonly destinations = new DestinationCompiler();
  private kernel = new Map<string, AppliedPolicy>();
  private readonly changed = new Map<string, { generation: number; at: number }>();
  applied = false;
  /** The guard of the last applied ruleset: what it opens, for the report. */
  guard: Guard | null = null;
  private suspendLogged = false;

  private confirmed: Confirmed = { ruleset: null, policies: [], hash: "", counters: new Map() };
  /** The confirmed state was taken from the kernel (once, before the first apply). */
  private seeded = false;
  private rolledBack: { hash: string; until: number; message: string } | null = null;

  constructor(
    readonly nft: NftExecutor,
    private readonly host: BuildOptions,
    private readonly log: Logger,
    private readonly confirmation?: Confirmation,
    policyNames?: PolicyNameStore,
  ) {
    this.syncer = new Syncer(nft, policyNames);
    this.auditor = new SetAuditor(this.syncer);
  }

  get kernelPolicies(): AppliedPolicy[] {
    return [...this.kernel.values()];
  }

  /** The cgroups named by the policies last enforced, and which of them existed then. */
  private cgroupSignature = "";

  private static cgroupSignatureOf(policies: readonly EgressPolicy[]): string {
    return JSON.stringify([...cgroupPaths(policies)].sort());
  }

  /** nft resolves cgroup paths when rules load: true when a named cgroup appeared or vanished. */
  cgroupsChanged(policies: readonly EgressPolicy[]): boolean {
    return Enforcer.cgroupSignatureOf(policies) !== this.cgroupSignature;
  }

  /** Resolves FQDNs that expired; true when an answer changed (the caller re-applies). */
  refreshFqdns(state: Pick<DesiredState, "policies" | "addressSets">): Promise<boolean> {
    // The host's time-server names are resolved with the policies' names (the NTP failsafe).
    return this.resolver.refresh([...fqdnNames(state.policies, state.addressSets), ...timeNames(this.host)]);
  }

  async enforce(state: DesiredState): Promise<EnforceResult> {
    const started = performance.now();
    this.cgroupSignature = Enforcer.cgroupSignatureOf(state.policies);
    // A policy gone from the input takes its last good version with it.
    const present = new Set(state.policies.map(lastGoodKey));
    for (const k of [...this.lastGood.keys()]) if (!present.has(k)) this.lastGood.delete(k);
    const opts = { ...this.host, nodeLabels: state.nodeLabels, fqdns: this.resolver.snapshot(), destinations: this.destinations, ...(state.nodeAddresses ? { clusterNodes: state.nodeAddresses } : {}) };
    const docs = { policies: state.policies, addressSets: state.addressSets, origins: new Map(state.origins ?? []) };
    const origins = docs.origins;
    const where = (name: string): string => {
      const o = origins.get(`EgressPolicy/${name}`);
      return o ? `${o.file}: document ${o.index + 1}: ` : "";
    };
    let result = build(docs, opts, state.apiServers, state.localPods);
    const failures = new Map<string, string>();
    for (const e of result.errors) {
      failures.set(e.policy, failures.get(e.policy) ?? issueLine(e));
      this.log.error({ policy: e.policy, error: issueLine(e), keptLastGood: this.lastGoodOf(state.policies, e.policy) !== undefined }, "policy refused on this node");
    }
    let policies = state.policies;
    const withLastGood = (refused: ReadonlyMap<string, string>): EgressPolicy[] =>
      state.policies.flatMap((p) => {
        if (!refused.has(p.metadata.name)) return [p];
        const good = this.lastGood.get(lastGoodKey(p));
        return good ? [good] : [];
      });
    if (failures.size) {
      this.metrics.applyTotal.inc({ result: "invalid" });
      policies = withLastGood(failures);
      result = build({ ...docs, policies }, opts, state.apiServers, state.localPods);
    }
    const invalid = new Map((state.invalid ?? []).map((i) => [i.name, i]));
    const current = new Map(state.policies.map((p) => [p.metadata.name, p]));
    const results = (): PolicyResult[] => {
      const out: PolicyResult[] = [];
      for (const p of state.policies) {
        const name = p.metadata.name;
        const compiled = result.policies.find((c) => c.name === name);
        const bad = invalid.get(name);
        if (bad) {
          if (!compiled && bad.nodeSelector && !selects(bad.nodeSelector, state.nodeLabels)) continue;
          // The object changed to a version the schema refuses; this older one stays.
          const kept = compiled ? `generation ${compiled.generation} stays enforced` : "not enforced";
          out.push({ name, generation: bad.generation, mode: bad.mode ?? p.spec.mode, result: "Failed", message: `${where(name)}refused by the agent's schema: ${bad.error}; ${kept}` });
          continue;
        }
        const failure = failures.get(name);
        if (!compiled && !failure) continue; // not selecting this node
        const generation = p.metadata.generation ?? 1;
        out.push(failure ? { name, generation, mode: p.spec.mode, result: "Failed", message: failure } : { name, generation, mode: p.spec.mode, result: "Applied" });
      }
      for (const bad of invalid.values()) {
        if (current.has(bad.name)) continue;
        if (bad.nodeSelector && !selects(bad.nodeSelector, state.nodeLabels)) continue;
        out.push({ name: bad.name, generation: bad.generation, mode: bad.mode ?? "Audit", result: "Failed", message: `${where(bad.name)}refused by the agent's schema: ${bad.error}; not enforced` });
      }
      return out;
    };
    // Identifies a ruleset for commit-confirmed only.
    let hash = this.confirmation ? rulesetHash(result.ruleset) : "";
    if (this.rolledBack && this.rolledBack.hash === hash && Date.now() < this.rolledBack.until && state.suspend === undefined) {
      const message = this.rolledBack.message;
      return { ok: false, applied: [], results: results().map((r): PolicyResult => ({ ...r, result: "RolledBack", message })), error: message };
    }
    let isolated = false;
    try {
      if (this.confirmation && state.suspend === undefined && hash !== this.confirmed.hash) await this.beforeChange(result.ruleset);
      let outcome: SyncOutcome;
      try {
        outcome = await this.syncer.sync(result.ruleset, { suspend: state.suspend !== undefined });
      } catch (e) {
        // The kernel refused what the schema and the compiler let through: find the policies
        // at fault, apply the others, and report those Failed with nft's message.
        if (!(e instanceof NftTransactionError) || state.suspend !== undefined) throw e;
        const refused = await this.refusedPolicies(policies, new Set(result.policies.map((c) => c.name)), docs, opts, state);
        if (!refused) throw e;
        for (const [name, why] of refused) {
          const p = current.get(name);
          const kept = p && this.lastGood.get(lastGoodKey(p));
          const message = `${where(name)}nft refused this policy: ${why}; ${kept ? `generation ${kept.metadata.generation ?? 1} stays enforced` : "not applied"}`;
          failures.set(name, message);
          const file = origins.get(`EgressPolicy/${name}`)?.file;
          this.log.error({ policy: name, ...(file ? { file } : {}), error: why, keptLastGood: kept !== undefined }, "policy refused by the kernel, the others applied");
        }
        policies = withLastGood(failures);
        result = build({ ...docs, policies }, opts, state.apiServers, state.localPods);
        hash = this.confirmation ? rulesetHash(result.ruleset) : "";
        outcome = await this.syncer.sync(result.ruleset);
        isolated = true;
      }
      if (outcome.mode === "suspended" || outcome.mode === "dormant") {
        const why = outcome.mode === "suspended" ? `suspended: ${state.suspend ?? ""}` : "table inet nftegress is dormant (set outside nftegress); nothing is enforced until it is cleared";
        if (!this.suspendLogged) this.log.warn({ reason: why }, "enforcement suspended, table dormant");
        this.suspendLogged = true;
        this.applied = true;
        return { ok: true, applied: [], results: results().map((r): PolicyResult => ({ ...r, result: "Suspended", message: why })), outcome };
      }
      if (this.suspendLogged) this.log.info({}, "enforcement resumed");
      this.suspendLogged = false;
      if (outcome.drift.length) {
        this.metrics.driftRepairs.inc();
        this.log.warn({ differences: outcome.drift.slice(0, 5), count: outcome.drift.length }, "table changed outside nftegress, repaired");
      }
      if (this.confirmation && hash !== this.confirmed.hash && !(await this.confirm(this.confirmation))) {
        const lost = `the API server was unreachable within ${Math.round(this.confirmation.deadlineMs / 1000)} s after applying this change`;
        if (this.confirmed.unknown !== undefined) {
          // Removing a table we cannot rebuild would open the node: the change stays.
          this.log.error({ reason: this.confirmed.unknown }, "lost the API server after applying, but the table found at start cannot be restored: keeping the change");
        } else {
          const message = `${lost}; the previous ruleset was restored`;
          await this.rollback();
          this.rolledBack = { hash, until: Date.now() + this.confirmation.retryMs, message };
          return { ok: false, applied: [], results: results().map((r): PolicyResult => ({ ...r, result: "RolledBack", message })), outcome, error: message };
        }
      }
      this.confirmed = { ruleset: result.ruleset, policies: result.policies, hash, counters: new Map() };
      if (this.confirmation?.saved) {
        try {
          this.confirmation.saved.save(result.ruleset);
        } catch (e) {
          this.log.warn({ error: e instanceof Error ? e.message : String(e) }, "saving the confirmed ruleset failed");
        }
      }
      this.guard = result.guard;
      this.rolledBack = null;
      for (const p of policies) if (!failures.has(p.metadata.name) && !invalid.has(p.metadata.name) && current.get(p.metadata.name) === p) this.lastGood.set(lastGoodKey(p), p);
      this.applied = true;
      this.metrics.applyTotal.inc({ result: isolated ? "partial" : "success" });
      this.metrics.applyDuration.observe((performance.now() - started) / 1000);
      this.metrics.elements.set(elementCount(result.ruleset));
      this.metrics.appliedGeneration.reset();
      this.metrics.lastChange.reset();
      const now = Date.now() / 1000;
      for (const p of result.policies) {
        const prev = this.changed.get(p.name);
        if (!prev || prev.generation !== p.generation) this.changed.set(p.name, { generation: p.generation, at: now });
        this.metrics.appliedGeneration.set({ policy: p.name }, p.generation);
        this.metrics.lastChange.set({ policy: p.name }, this.changed.get(p.name)?.at ?? now);
      }
      if (outcome.changedElements || outcome.mode === "full") {
        this.log.info(
          { policies: result.policies.map((p) => `${p.name}:${p.mode}:gen${p.generation}`), mode: outcome.mode, changedElements: outcome.changedElements, ms: Math.round(outcome.durationMs) },
          "ruleset applied",
        );
      }
      for (const p of result.policies) for (const n of p.notes) this.log.warn({ policy: p.name, note: n }, "rule matches nothing on this node");
      if (outcome.cleanupError) this.log.warn({ error: outcome.cleanupError }, "stale objects not yet removed");
      return { ok: true, applied: result.policies, results: results(), outcome };
    } catch (e) {
      const error = e instanceof Error ? e.message : String(e);
      this.metrics.applyTotal.inc({ result: "failure" });
      this.log.error({ error }, "apply failed, the previous ruleset stays in place");
      const failed = results().map((r): PolicyResult => ({ ...r, result: "Failed", message: r.message ?? error }));
      return { ok: false, applied: [], results: failed, error };
    }
  }

  private lastGoodOf(policies: readonly EgressPolicy[], name: string): EgressPolicy | undefined {
    const p = policies.find((x) => x.metadata.name === name);
    return p ? this.lastGood.get(lastGoodKey(p)) : undefined;
  }

  /**
   * The policies the kernel refuses, by name with nft's message, found by bisecting with
   * `nft --check` of rulesets built from subsets. null when the refusal is not any policy's
   * (see isolate), or when a policy at fault is the very version enforced now: dropping it
   * would loosen, so nothing new is applied.
   */
  private async refusedPolicies(policies: readonly EgressPolicy[], compiled: ReadonlySet<string>, docs: Parameters<typeof build>[0], opts: Parameters<typeof build>[1], state: DesiredState): Promise<Map<string, string> | null> {
    const selected = policies.filter((p) => compiled.has(p.metadata.name));
    // Subsets compile with a compiler of their own: the agent's would forget (sweep) the
    // destinations of the policies a subset leaves out.
    const scratch = { ...opts, destinations: new DestinationCompiler() };
    const found = await isolate(selected, async (subset) => {
      const r = build({ ...docs, policies: [...subset] }, scratch, state.apiServers, state.localPods);
      try {
        await this.nft.check(checkScript(r.ruleset));
        return null;
      } catch (e) {
        if (!(e instanceof NftTransactionError)) throw e;
        return e.message.replace(/^nft --check rejected the ruleset: /, "");
      }
    });
    if (!found) return null;
    this.log.warn({ checks: found.checks, policies: selected.length, refused: [...found.faulty.keys()].map((p) => p.metadata.name) }, "traced the kernel's refusal to policies");
    const out = new Map<string, string>();
    for (const [p, why] of found.faulty) {
      if (this.lastGood.get(lastGoodKey(p)) === p) return null;
      out.set(p.metadata.name, why);
    }
    return out;
  }

  private async confirm(c: Confirmation): Promise<boolean> {
    const end = Date.now() + c.deadlineMs;
    for (;;) {
      if (await c.check().catch(() => false)) return true;
      if (Date.now() + c.intervalMs > end) return false;
      await new Promise((r) => setTimeout(r, c.intervalMs));
    }
  }

  /**
   * Before a change that commit-confirm may roll back: the first time, takes the confirmed
   * state from the kernel's table (seed.ts); then reads the values of the confirmed named
   * counters the change deletes, so a rollback re-creates them where they were.
   */
  private async beforeChange(next: Ruleset): Promise<void> {
    if (!this.seeded) {
      try {
        const seed = await snapshotTable(this.nft, this.confirmation?.saved);
        if (seed.kind === "dormant") return; // nothing will be applied; seed when it is cleared
        this.seeded = true;
        if (seed.kind === "snapshot") {
          this.confirmed = { ruleset: seed.snapshot.ruleset, policies: [], hash: "kernel", counters: seed.snapshot.counters };
        } else if (seed.kind === "unknown") {
          this.confirmed = { ruleset: null, unknown: seed.reason, policies: [], hash: "kernel", counters: new Map() };
          this.log.warn({ reason: seed.reason }, "the table found at start cannot be rebuilt; a change that fails commit-confirm will be kept");
        }
        if (seed.kind !== "absent") this.log.info({ restorable: seed.kind === "snapshot" }, "took the table found at start as the confirmed state");
      } catch (e) {
        this.seeded = true;
        const reason = e instanceof Error ? e.message : String(e);
        this.confirmed = { ruleset: null, unknown: reason, policies: [], hash: "kernel", counters: new Map() };
        this.log.warn({ reason }, "the table found at start cannot be rebuilt; a change that fails commit-confirm will be kept");
      }
      return;
    }
    const prev = this.confirmed.ruleset;
    if (!prev) return;
    const keep = new Set(next.counters);
    if (!prev.counters.some((n) => !keep.has(n))) return;
    try {
      for (const [n, v] of await counterValues(this.nft)) if (prev.counters.includes(n)) this.confirmed.counters.set(n, v);
    } catch {
      // a rollback then re-creates those counters from their last known values, or 0
    }
  }

  /** Restores the last confirmed ruleset in one transaction (none: there was no table before
   *  the first apply, so removes it). */
  private async rollback(): Promise<void> {
    this.metrics.rollbacks.inc();
    const prev = this.confirmed;
    this.log.error({ restoring: prev.ruleset ? (prev.policies.length ? prev.policies.map((p) => `${p.name}:gen${p.generation}`) : "the table found at start") : "no table" }, "lost the API server after applying, rolling back");
    try {
      if (prev.ruleset) await this.syncer.sync(prev.ruleset, { restore: { counters: prev.counters } });
      else await this.syncer.remove();
    } catch (e) {
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, "rollback failed");
    }
  }

  /** The drift check: the terse table comparison, then, when the table matched, the element
   *  audit of the next sets. Returns what differed. */
  async repairDrift(): Promise<string[]> {
    try {
      const diffs = await this.syncer.repairDrift();
      if (diffs.length) {
        this.metrics.driftRepairs.inc();
        this.log.warn({ differences: diffs.slice(0, 5), count: diffs.length }, "table changed outside nftegress, repaired");
        return diffs;
      }
      const out: string[] = [];
      for (const audit of await this.auditor.tick()) {
        const { missing, extra } = audit.drift;
        this.log.warn({ set: audit.set, missing: missing.length, extra: extra.length, examples: [...missing, ...extra].slice(0, 5) }, "set elements changed outside nftegress, repaired");
        out.push(`set ${audit.set}: ${missing.length} elements missing, ${extra.length} foreign`);
      }
      // One repair (one transaction), however many sets it put back.
      if (out.length) this.metrics.driftRepairs.inc();
      return out;
    } catch (e) {
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, "drift repair failed");
      return [];
    }
  }

  async refreshCounters(): Promise<AppliedPolicy[]> {
    try {
      const names = userNames(readIdentities(this.host.passwd, this.host.group));
      const status = await readStatus(this.nft, names, { previous: this.kernel, policyNames: this.syncer.policyNames() });
      this.kernel = new Map(status.policies.map((p) => [p.id, p]));
      this.metrics.setKernelSnapshot(status.policies);
    } catch (e) {
      this.log.warn({ error: e instanceof Error ? e.message : String(e) }, "reading counters failed");
    }
    return this.kernelPolicies;
  }
}
