// The standalone agent for plain Linux servers: watches a directory of policy files, applies
// on start and on every change, keeps the last good state of a file that turns invalid (and
// says so), repairs drift, and serves metrics. Kubernetes is not involved.
import { watch, statSync, type FSWatcher } from "node:fs";
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { EgressPolicy } from "../api/policy.js";
import type { EgressAddressSet } from "../api/addressset.js";
import { readStatus, type AppliedPolicy } from "./counters.js";
import { fqdnNames } from "./inputs.js";
import { Syncer } from "./syncer.js";
import { build, issueText, type BuildOptions } from "../cli/build.js";
import { FqdnResolver } from "../host/fqdns.js";
import { readIdentities, userNames } from "../host/identities.js";
import { AgentMetrics } from "../metrics/metrics.js";
import { serveMetrics } from "../metrics/server.js";
import type { NftExecutor } from "../nft/executor.js";
import { elementCount } from "../nft/ruleset.js";
import { InputError, listFiles, merge, parseFile, type Documents } from "../source/documents.js";
import { shortHash } from "../policy/names.js";

export interface StandaloneOptions {
  policies: string;
  build: BuildOptions;
  metricsAddress: string;
  driftIntervalMs: number;
  countersIntervalMs: number;
  pollIntervalMs: number;
}

type Parsed = ReturnType<typeof parseFile>;

export class StandaloneAgent {
  readonly metrics = new AgentMetrics();
  private readonly syncer: Syncer;
  private readonly lastGoodFile = new Map<string, Parsed>();
  private readonly lastGoodPolicy = new Map<string, EgressPolicy>();
  private readonly generations = new Map<string, { revision: string; generation: number; changed: number }>();
  private readonly resolver = new FqdnResolver();
  private readonly timers: NodeJS.Timeout[] = [];
  private watcher: FSWatcher | null = null;
  private server: Server | null = null;
  private dirty = true;
  private running: Promise<void> | null = null;
  private signature = "";
  private applied = false;
  private lastLoop = Date.now();
  private kernelSnapshot = new Map<string, AppliedPolicy>();

  constructor(
    private readonly nft: NftExecutor,
    private readonly opts: StandaloneOptions,
    private readonly log: Logger,
  ) {
    this.syncer = new Syncer(nft);
  }

  async start(): Promise<void> {
    this.server = await serveMetrics(this.opts.metricsAddress, this.metrics.registry, {
      live: () => Date.now() - this.lastLoop < 60_000,
      ready: () => this.applied,
    });
    this.log.info({ policies: this.opts.policies, metrics: this.opts.metricsAddress }, "standalone agent started");
    this.kick();
    try {
      this.watcher = watch(this.opts.policies, () => this.kick());
    } catch (e) {
      this.log.warn({ err: String(e) }, "cannot watch policy path, polling only");
    }
    this.timers.push(setInterval(() => this.poll(), this.opts.pollIntervalMs));
    this.timers.push(setInterval(() => void this.repairDrift(), this.opts.driftIntervalMs));
    this.timers.push(setInterval(() => void this.refreshCounters(), this.opts.countersIntervalMs));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.watcher?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.running;
  }

  /** Schedules a reconcile; concurrent requests coalesce into one more run. */
  kick(): void {
    this.dirty = true;
    if (this.running) return;
    this.running = (async () => {
      while (this.dirty) {
        this.dirty = false;
        await this.reconcile().catch((e: unknown) => this.log.error({ err: String(e) }, "reconcile failed"));
      }
      this.running = null;
    })();
  }

  private poll(): void {
    this.lastLoop = Date.now();
    const sig = this.dirSignature();
    if (sig !== this.signature) this.kick();
    void this.resolver.refresh(fqdnNames(this.currentPolicies(), this.currentSets())).then((changed) => changed && this.kick());
  }

  private dirSignature(): string {
    try {
      return listFiles(this.opts.policies)
        .map((f) => {
          const s = statSync(f);
          return `${f}:${s.mtimeMs}:${s.size}`;
        })
        .join("|");
    } catch {
      return "missing";
    }
  }

  private currentPolicies(): EgressPolicy[] {
    return [...this.lastGoodFile.values()].flatMap((p) => p.policies);
  }

  private currentSets(): EgressAddressSet[] {
    return [...this.lastGoodFile.values()].flatMap((p) => p.addressSets);
  }

  private load(): Documents {
    let files: string[];
    try {
      files = listFiles(this.opts.policies);
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, "policy path unreadable, keeping the last good state");
      files = [...this.lastGoodFile.keys()];
      return merge([...this.lastGoodFile.values()]);
    }
    for (const f of [...this.lastGoodFile.keys()]) if (!files.includes(f)) this.lastGoodFile.delete(f);
    for (const f of files) {
      try {
        this.lastGoodFile.set(f, parseFile(f));
      } catch (e) {
        this.metrics.applyTotal.inc({ result: "invalid" });
        const kept = this.lastGoodFile.has(f);
        this.log.error({ file: f, error: e instanceof Error ? e.message : String(e), keptLastGood: kept }, kept ? "policy file invalid, keeping its last good state" : "policy file invalid, ignoring it");
      }
    }
    try {
      return merge([...this.lastGoodFile.values()]);
    } catch (e) {
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, "duplicate object names across files");
      throw e;
    }
  }

  /** Standalone generations: bumped whenever a policy's spec changes. */
  private withGenerations(policies: EgressPolicy[]): EgressPolicy[] {
    const now = Date.now() / 1000;
    return policies.map((p) => {
      const revision = shortHash(JSON.stringify(p.spec), 8);
      const prev = this.generations.get(p.metadata.name);
      const next = !prev ? { revision, generation: p.metadata.generation ?? 1, changed: now } : prev.revision === revision ? prev : { revision, generation: prev.generation + 1, changed: now };
      this.generations.set(p.metadata.name, next);
      return { ...p, metadata: { ...p.metadata, generation: next.generation } };
    });
  }

  async reconcile(): Promise<void> {
    const started = performance.now();
    this.signature = this.dirSignature();
    let docs: Documents;
    try {
      docs = this.load();
    } catch {
      return;
    }
    let policies = this.withGenerations(docs.policies);
    let result = build({ ...docs, policies }, { ...this.opts.build, fqdns: this.resolver.snapshot() });
    // A policy that fails validation on this node keeps its last good version.
    const failed = new Set(result.errors.map((e) => e.policy));
    for (const e of result.errors) {
      this.log.error({ error: issueText(e, docs.origins), keptLastGood: this.lastGoodPolicy.has(e.policy) }, "policy refused on this node");
    }
    if (failed.size) {
      this.metrics.applyTotal.inc({ result: "invalid" });
      policies = policies.flatMap((p) => (failed.has(p.metadata.name) ? (this.lastGoodPolicy.has(p.metadata.name) ? [this.lastGoodPolicy.get(p.metadata.name) as EgressPolicy] : []) : [p]));
      result = build({ ...docs, policies }, { ...this.opts.build, fqdns: this.resolver.snapshot() });
    }
    try {
      const outcome = await this.syncer.sync(result.ruleset, result.policies);
      for (const p of policies) if (!failed.has(p.metadata.name)) this.lastGoodPolicy.set(p.metadata.name, p);
      this.applied = true;
      this.metrics.applyTotal.inc({ result: "success" });
      this.metrics.applyDuration.observe((performance.now() - started) / 1000);
      this.metrics.elements.set(elementCount(result.ruleset));
      this.metrics.appliedGeneration.reset();
      this.metrics.lastChange.reset();
      for (const p of result.policies) {
        this.metrics.appliedGeneration.set({ policy: p.name }, p.generation);
        this.metrics.lastChange.set({ policy: p.name }, this.generations.get(p.name)?.changed ?? 0);
      }
      if (outcome.changedElements || outcome.mode === "full" || outcome.revokedFlows) {
        this.log.info(
          { policies: result.policies.map((p) => `${p.name}:${p.mode}:gen${p.generation}`), mode: outcome.mode, changedElements: outcome.changedElements, revokedFlows: outcome.revokedFlows, ms: Math.round(outcome.durationMs) },
          "ruleset applied",
        );
      }
      for (const p of result.policies) for (const n of p.notes) this.log.warn({ policy: p.name, note: n }, "rule matches nothing on this node");
      if (outcome.cleanupError) this.log.warn({ error: outcome.cleanupError }, "stale objects not yet removed");
    } catch (e) {
      this.metrics.applyTotal.inc({ result: "failure" });
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, "apply failed, the previous ruleset stays in place");
    }
  }

  async repairDrift(): Promise<void> {
    if (this.running) return;
    try {
      const diffs = await this.syncer.repairDrift();
      if (diffs.length) {
        this.metrics.driftRepairs.inc();
        this.log.warn({ differences: diffs.slice(0, 5), count: diffs.length }, "table changed outside nftegress, repaired");
      }
    } catch (e) {
      this.log.error({ error: e instanceof Error ? e.message : String(e) }, "drift repair failed");
    }
  }

  async refreshCounters(): Promise<void> {
    try {
      const names = userNames(readIdentities(this.opts.build.passwd, this.opts.build.group));
      const status = await readStatus(this.nft, names, this.kernelSnapshot);
      this.kernelSnapshot = new Map(status.policies.map((p) => [p.id, p]));
      this.metrics.setKernelSnapshot(status.policies);
    } catch (e) {
      this.log.warn({ error: e instanceof Error ? e.message : String(e) }, "reading counters failed");
    }
  }
}

export { InputError };
