// The agent's core, shared by the standalone and the in-cluster agent: compiles the policies
// that select this node (a policy refused on this node keeps its last good version), applies
// them through the Syncer, repairs drift, reads counters, and keeps the metrics.
import type { Logger } from "pino";
import type { EgressAddressSet } from "../api/addressset.js";
import type { EgressPolicy } from "../api/policy.js";
import { build, type BuildOptions } from "./build.js";
import { FqdnResolver } from "../host/fqdns.js";
import { readIdentities, userNames } from "../host/identities.js";
import { AgentMetrics } from "../metrics/metrics.js";
import type { NftExecutor } from "../nft/executor.js";
import { elementCount, rulesetHash, type Ruleset } from "../nft/ruleset.js";
import type { CompiledPolicy, CompileIssue } from "../policy/compile.js";
import { DestinationCompiler } from "../policy/destinations.js";
import type { Endpoint } from "../policy/guard.js";
import type { Origin } from "../source/documents.js";
import { readStatus, type AppliedPolicy } from "./counters.js";
import { cgroupPaths, fqdnNames } from "./inputs.js";
import type { AllowedStore } from "../host/state.js";
import { SetAuditor } from "./setaudit.js";
import { Syncer, type SyncOutcome } from "./syncer.js";

export interface DesiredState {
  policies: EgressPolicy[];
  addressSets: EgressAddressSet[];
  nodeLabels: Record<string, string>;
  apiServers: Endpoint[];
  /** The node's own pod CIDRs, kept open by the guard. */
  localPods?: string[];
  origins?: ReadonlyMap<string, Origin>;
  /** Break-glass: why enforcement is suspended (node annotation, suspend file), if it is. */
  suspend?: string;
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
 * within the deadline, or the previous ruleset is restored and the change reported
 * RolledBack. The same desired state is not tried again until retryMs has passed.
 */
export interface Confirmation {
  check(): Promise<boolean>;
  deadlineMs: number;
  intervalMs: number;
  retryMs: number;
}

interface Confirmed {
  ruleset: Ruleset | null;
  policies: CompiledPolicy[];
  hash: string;
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
  private suspendLogged = false;

  private confirmed: Confirmed = { ruleset: null, policies: [], hash: "" };
  private rolledBack: { hash: string; until: number; message: string } | null = null;

  constructor(
    readonly nft: NftExecutor,
    private readonly host: BuildOptions,
    private readonly log: Logger,
    private readonly confirmation?: Confirmation,
    store?: AllowedStore,
  ) {
    this.syncer = new Syncer(nft, store);
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
    return this.resolver.refresh(fqdnNames(state.policies, state.addressSets));
  }

  async enforce(state: DesiredState): Promise<EnforceResult> {
    const started = performance.now();
    this.cgroupSignature = Enforcer.cgroupSignatureOf(state.policies);
    const opts = { ...this.host, nodeLabels: state.nodeLabels, fqdns: this.resolver.snapshot(), destinations: this.destinations };
    const docs = { policies: state.policies, addressSets: state.addressSets, origins: new Map(state.origins ?? []) };
    let result = build(docs, opts, state.apiServers, state.localPods);
    const failures = new Map<string, string>();
    for (const e of result.errors) {
      failures.set(e.policy, failures.get(e.policy) ?? issueLine(e));
      this.log.error({ policy: e.policy, error: issueLine(e), keptLastGood: this.lastGood.has(e.policy) }, "policy refused on this node");
    }
    let policies = state.policies;
    if (failures.size) {
      this.metrics.applyTotal.inc({ result: "invalid" });
      policies = state.policies.flatMap((p) => {
        if (!failures.has(p.metadata.name)) return [p];
        const good = this.lastGood.get(p.metadata.name);
        return good ? [good] : [];
      });
      result = build({ ...docs, policies }, opts, state.apiServers, state.localPods);
    }
    const current = new Map(state.policies.map((p) => [p.metadata.name, p]));
    const results = (): PolicyResult[] => {
      const out: PolicyResult[] = [];
      for (const p of state.policies) {
        const compiled = result.policies.find((c) => c.name === p.metadata.name);
        const failure = failures.get(p.metadata.name);
        if (!compiled && !failure) continue; // not selecting this node
        const generation = p.metadata.generation ?? 1;
        out.push(failure ? { name: p.metadata.name, generation, mode: p.spec.mode, result: "Failed", message: failure } : { name: p.metadata.name, generation, mode: p.spec.mode, result: "Applied" });
      }
      return out;
    };
    // Identifies a ruleset for commit-confirmed only.
    const hash = this.confirmation ? rulesetHash(result.ruleset) : "";
    if (this.rolledBack && this.rolledBack.hash === hash && Date.now() < this.rolledBack.until && state.suspend === undefined) {
      const message = this.rolledBack.message;
      return { ok: false, applied: [], results: results().map((r): PolicyResult => ({ ...r, result: "RolledBack", message })), error: message };
    }
    try {
      const outcome = await this.syncer.sync(result.ruleset, result.policies, { suspend: state.suspend !== undefined });
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
        const message = `the API server was unreachable within ${Math.round(this.confirmation.deadlineMs / 1000)} s after applying this change; the previous ruleset was restored`;
        await this.rollback();
        this.rolledBack = { hash, until: Date.now() + this.confirmation.retryMs, message };
        return { ok: false, applied: [], results: results().map((r): PolicyResult => ({ ...r, result: "RolledBack", message })), outcome, error: message };
      }
      this.confirmed = { ruleset: result.ruleset, policies: result.policies, hash };
      this.rolledBack = null;
      for (const p of policies) if (!failures.has(p.metadata.name) && current.get(p.metadata.name) === p) this.lastGood.set(p.metadata.name, p);
      this.applied = true;
      this.metrics.applyTotal.inc({ result: "success" });
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
      if (outcome.changedElements || outcome.mode === "full" || outcome.revokedFlows) {
        this.log.info(
          { policies: result.policies.map((p) => `${p.name}:${p.mode}:gen${p.generation}`), mode: outcome.mode, changedElements: outcome.changedElements, revokedFlows: outcome.revokedFlows, ms: Math.round(outcome.durationMs) },
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

  private async confirm(c: Confirmation): Promise<boolean> {
    const end = Date.now() + c.deadlineMs;
    for (;;) {
      if (await c.check().catch(() => false)) return true;
      if (Date.now() + c.intervalMs > end) return false;
      await new Promise((r) => setTimeout(r, c.intervalMs));
    }
  }

  /** Restores the last confirmed ruleset (none: removes the table, as before the first apply). */
  private async rollback(): Promise<void> {
    this.metrics.rollbacks.inc();
    const prev = this.confirmed;
    this.log.error({ restoring: prev.ruleset ? prev.policies.map((p) => `${p.name}:gen${p.generation}`) : "no table" }, "lost the API server after applying, rolling back");
    try {
      if (prev.ruleset) await this.syncer.sync(prev.ruleset, prev.policies);
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
      const status = await readStatus(this.nft, names, this.kernel);
      this.kernel = new Map(status.policies.map((p) => [p.id, p]));
      this.metrics.setKernelSnapshot(status.policies);
    } catch (e) {
      this.log.warn({ error: e instanceof Error ? e.message : String(e) }, "reading counters failed");
    }
    return this.kernelPolicies;
  }
}
