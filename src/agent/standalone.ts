// The standalone agent for plain Linux servers: watches a directory of policy files, applies
// on start and on every change, keeps the last good state of a file that turns invalid (and
// says so), repairs drift, and serves metrics. Kubernetes is not involved.
import type { PolicyNameStore } from "../host/policynames.js";
import { existsSync, watch, statSync, type FSWatcher } from "node:fs";
import type { Server } from "node:http";
import type { Logger } from "pino";
import type { EgressPolicy } from "../api/policy.js";
import type { BuildOptions } from "./build.js";
import { serveMetrics } from "../metrics/server.js";
import type { NftExecutor } from "../nft/executor.js";
import { shortHash } from "../policy/names.js";
import { NotRegularFileError, listFiles, merge, parseFile, type Documents } from "../source/documents.js";
import { Enforcer } from "./enforcer.js";
import type { TableLock } from "../host/lock.js";
import { HeapTrimmer } from "./heap.js";
import { Kicker } from "./kicker.js";
import { waitForTableLock } from "./lockwait.js";

export interface StandaloneOptions {
  policies: string;
  build: BuildOptions;
  metricsAddress: string;
  driftIntervalMs: number;
  countersIntervalMs: number;
  pollIntervalMs: number;
  /** Break-glass: while this file exists, the table is dormant. */
  suspendFile?: string | undefined;
  /** The table's lock, held for the agent's lifetime (it owns the table). */
  lock?: TableLock;
  /** Where the policies' names are kept by id (default: in memory; see host/policynames.ts). */
  policyNames?: PolicyNameStore;
}

type Parsed = ReturnType<typeof parseFile>;

/** Quiet time after a file event before reading: writes in place, files renamed into place. */
const WRITE_SETTLE_MS = 50;
const RENAME_SETTLE_MS = 5;

function fileSignature(file: string): string | null {
  try {
    const s = statSync(file);
    return `${s.ino}:${s.mtimeMs}:${s.ctimeMs}:${s.size}`;
  } catch {
    return null;
  }
}

export class StandaloneAgent {
  readonly enforcer: Enforcer;
  private readonly lastGoodFile = new Map<string, Parsed>();
  /** Per file: the stat signature it had when last read. */
  private readonly fileSignature = new Map<string, string>();
  private readonly generations = new Map<string, { revision: string; generation: number }>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly kicker = new Kicker(() => this.reconcile());
  private readonly heap = new HeapTrimmer(() => this.kicker.busy);
  private watcher: FSWatcher | null = null;
  private server: Server | null = null;
  private signature = "";
  /** The documents last loaded (what the last good files hold). */
  private docs: Documents = { policies: [], addressSets: [], origins: new Map() };
  private suspended = false;
  private lastLoop = Date.now();
  private waitingForLock = false;

  constructor(
    nft: NftExecutor,
    private readonly opts: StandaloneOptions,
    private readonly log: Logger,
  ) {
    this.enforcer = new Enforcer(nft, opts.build, log, undefined, opts.policyNames);
  }

  async start(): Promise<void> {
    this.server = await serveMetrics(this.opts.metricsAddress, this.enforcer.metrics.registry, {
      live: () => this.waitingForLock || Date.now() - this.lastLoop < 60_000,
      ready: () => this.enforcer.applied,
    });
    await this.takeLock();
    this.log.info({ policies: this.opts.policies, metrics: this.opts.metricsAddress }, "standalone agent started");
    this.kicker.kick();
    try {
      // Editors and tools write in steps (truncate, then write): after a write ("change"),
      // settle for a moment first. A file renamed into place is complete: go almost at once.
      let settle: NodeJS.Timeout | undefined;
      this.watcher = watch(this.opts.policies, (event) => {
        clearTimeout(settle);
        settle = setTimeout(() => this.kicker.kick(), event === "rename" ? RENAME_SETTLE_MS : WRITE_SETTLE_MS);
      });
    } catch (e) {
      this.log.warn({ err: String(e) }, "cannot watch policy path, polling only");
    }
    this.timers.push(setInterval(() => this.poll(), this.opts.pollIntervalMs));
    this.timers.push(setInterval(() => void (this.kicker.busy ? undefined : this.enforcer.repairDrift()), this.opts.driftIntervalMs));
    this.timers.push(setInterval(() => void this.enforcer.refreshCounters(), this.opts.countersIntervalMs));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.heap.stop();
    this.watcher?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.kicker.idle();
    this.opts.lock?.release();
  }

  /** Waits as long as it takes for the table's lock (live, not ready meanwhile), logging once. */
  private async takeLock(): Promise<void> {
    const lock = this.opts.lock;
    if (!lock) return;
    this.waitingForLock = true;
    try {
      await waitForTableLock(lock, this.log);
    } finally {
      this.waitingForLock = false;
      this.lastLoop = Date.now();
    }
  }

  private poll(): void {
    this.lastLoop = Date.now();
    if (this.dirSignature() !== this.signature) this.kicker.kick();
    if (this.opts.suspendFile && existsSync(this.opts.suspendFile) !== this.suspended) this.kicker.kick();
    if (this.enforcer.cgroupsChanged(this.docs.policies)) this.kicker.kick();
    void this.enforcer.refreshFqdns(this.docs).then((changed) => changed && this.kicker.kick());
  }

  private dirSignature(): string {
    try {
      return listFiles(this.opts.policies)
        .map((f) => `${f}:${fileSignature(f) ?? ""}`)
        .join("|");
    } catch {
      return "missing";
    }
  }

  private load(): Documents {
    let files: string[];
    try {
      files = listFiles(this.opts.policies);
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, "policy path unreadable, keeping the last good state");
      return merge([...this.lastGoodFile.values()]);
    }
    for (const f of [...this.lastGoodFile.keys()]) if (!files.includes(f)) this.lastGoodFile.delete(f);
    for (const f of [...this.fileSignature.keys()]) if (!files.includes(f)) this.fileSignature.delete(f);
    for (const f of files) {
      // Only changed files are read and validated again (a 100k-CIDR directory takes ~0.1 s).
      const sig = fileSignature(f);
      if (sig !== null && this.fileSignature.get(f) === sig) continue;
      this.fileSignature.set(f, sig ?? "");
      try {
        this.lastGoodFile.set(f, parseFile(f));
      } catch (e) {
        if (e instanceof NotRegularFileError) {
          // Logged once per entry: its signature is unchanged at the next reload.
          const kept = this.lastGoodFile.has(f);
          this.log.warn({ file: f, error: e.message, keptLastGood: kept }, kept ? "policy path entry is not a regular file, skipped, keeping its last good state" : "policy path entry is not a regular file, skipped");
          continue;
        }
        this.enforcer.metrics.applyTotal.inc({ result: "invalid" });
        const kept = this.lastGoodFile.has(f);
        this.log.error({ file: f, error: e instanceof Error ? e.message : String(e), keptLastGood: kept }, kept ? "policy file invalid, keeping its last good state" : "policy file invalid, ignoring it");
      }
    }
    return merge([...this.lastGoodFile.values()]);
  }

  /** Standalone generations: bumped whenever a policy's spec changes. */
  private withGenerations(policies: EgressPolicy[]): EgressPolicy[] {
    return policies.map((p) => {
      const revision = shortHash(JSON.stringify(p.spec), 8);
      const prev = this.generations.get(p.metadata.name);
      const next = !prev ? { revision, generation: p.metadata.generation ?? 1 } : prev.revision === revision ? prev : { revision, generation: prev.generation + 1 };
      this.generations.set(p.metadata.name, next);
      return { ...p, metadata: { ...p.metadata, generation: next.generation } };
    });
  }

  private async reconcile(): Promise<void> {
    this.signature = this.dirSignature();
    let docs: Documents;
    try {
      docs = this.load();
      this.docs = docs;
    } catch (e) {
      // Nothing is applied while two objects share a name; the kernel keeps the last good state.
      this.enforcer.metrics.applyTotal.inc({ result: "invalid" });
      this.log.error({ error: e instanceof Error ? e.message : String(e), keptLastGood: true }, "duplicate object names across files, keeping the last good state");
      return;
    }
    this.suspended = this.opts.suspendFile !== undefined && existsSync(this.opts.suspendFile);
    const result = await this.enforcer.enforce({
      policies: this.withGenerations(docs.policies),
      addressSets: docs.addressSets,
      nodeLabels: this.opts.build.nodeLabels,
      apiServers: [],
      origins: docs.origins,
      ...(this.suspended ? { suspend: `file ${this.opts.suspendFile ?? ""} exists` } : {}),
    });
    // The kernel's counters for what was just applied (0 in a new table), so every applied
    // policy's counters are exported from the first scrape, not from the next counters tick.
    if (result.ok) await this.enforcer.refreshCounters();
    this.heap.workDone();
  }
}
