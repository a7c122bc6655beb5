// The in-cluster agent: watches EgressPolicies, EgressAddressSets, its own Node, every Node's
// addresses (where the guard's overlay entries go) and the API server's EndpointSlices, enforces through the shared Enforcer, and reports to its
// NodeEgressReport. It never applies before every watch has synced once (an empty store
// would open the node), and keeps enforcing the last applied state while the API server is
// unreachable (fail-static).
import type { PolicyNameStore } from "../host/policynames.js";
import { createHash } from "node:crypto";
import type { Server } from "node:http";
import type { Logger } from "pino";
import { parser } from "../api/parse.js";
import { parseAddressSet, type EgressAddressSet } from "../api/addressset.js";
import { EndpointSlice, NodeAddresses, NodeInfo, SUSPEND_ANNOTATION } from "../api/kube.js";
import { LabelSelector } from "../api/common.js";
import { EgressPolicy } from "../api/policy.js";
import type { BuildOptions } from "./build.js";
import { KubeClient } from "../kube/client.js";
import { Reflector, customSource, endpointSliceSource, nodeSource, type InvalidObject } from "../kube/reflector.js";
import { serveMetrics } from "../metrics/server.js";
import type { NftExecutor } from "../nft/executor.js";
import { parseAddress } from "../net/cidr.js";
import type { Endpoint } from "../policy/guard.js";
import { Enforcer, type EnforceResult, type InvalidPolicy } from "./enforcer.js";
import type { RulesetStore } from "../host/confirmed.js";
import type { TableLock } from "../host/lock.js";
import { rulesetHash } from "../nft/ruleset.js";
import { HeapTrimmer } from "./heap.js";
import { Kicker } from "./kicker.js";
import { OwnerWatch, type OwnerRef } from "./owner.js";
import { ReportWriter, buildReport } from "./report.js";
import { waitForTableLock } from "./lockwait.js";

export interface ClusterAgentOptions {
  nodeName: string;
  build: BuildOptions;
  metricsAddress: string;
  reportIntervalMs: number;
  driftIntervalMs: number;
  countersIntervalMs: number;
  /** Commit-confirmed deadline; 0 disables. */
  confirmTimeoutMs: number;
  /** Where the confirmed ruleset is kept for the next agent on this node (commit-confirm). */
  rulesets?: RulesetStore;
  /** false: the guard keeps no entry for the API server (dangerous; tests and clusters that
   *  want their policies to decide it). Default true. */
  guardApiServer?: boolean;
  /** The agent's own DaemonSet: when it is deleted, the table goes with the agent. */
  owner?: OwnerRef;
  /** The table's lock, held for the agent's lifetime (it owns the table). */
  lock?: TableLock;
  /** Where the policies' names are kept by id (default: in memory; see host/policynames.ts). */
  policyNames?: PolicyNameStore;
}


/** API server endpoints the guard must keep reachable: the EndpointSlices, and the URL in use. */
export function apiServerEndpoints(slices: readonly EndpointSlice[], serverUrl: string): Endpoint[] {
  const out = new Map<string, Endpoint>();
  for (const s of slices) {
    const ports = (s.ports ?? []).filter((p) => (p.protocol ?? "TCP") === "TCP" && p.port).map((p) => p.port as number);
    for (const e of s.endpoints ?? []) for (const a of e.addresses) for (const port of ports) if (parseAddress(a)) out.set(`${a}:${port}`, { address: a, port });
  }
  try {
    const u = new URL(serverUrl);
    const host = u.hostname.replace(/^\[|\]$/g, "");
    const port = Number(u.port || 443);
    if (parseAddress(host)) out.set(`${host}:${port}`, { address: host, port });
  } catch {
    // no usable URL: the EndpointSlices alone
  }
  return [...out.values()].sort((a, b) => `${a.address}:${a.port}`.localeCompare(`${b.address}:${b.port}`));
}

/** What can still be read of a policy the agent's schema refuses: its generation, and its
 *  selector and mode when those parts parse. */
export function invalidPolicy(o: InvalidObject): InvalidPolicy {
  const raw = (typeof o.raw === "object" && o.raw !== null ? o.raw : {}) as { metadata?: { generation?: unknown }; spec?: { nodeSelector?: unknown; mode?: unknown } };
  const generation = typeof raw.metadata?.generation === "number" ? raw.metadata.generation : 1;
  const selector = LabelSelector.safeParse(raw.spec?.nodeSelector ?? {});
  const mode = raw.spec?.mode === "Enforce" || raw.spec?.mode === "Audit" ? raw.spec.mode : undefined;
  return { name: o.key, generation, error: o.error, ...(selector.success ? { nodeSelector: selector.data } : {}), ...(mode ? { mode } : {}) };
}

const NODE_SETTLE_MS = 200;

/** The addresses of every Node (InternalIP, ExternalIP; both families), valid ones, sorted. */
export function clusterNodeAddresses(nodes: readonly NodeAddresses[]): string[] {
  const out = new Set<string>();
  for (const n of nodes) for (const a of n.addresses) if (parseAddress(a)) out.add(a);
  return [...out].sort();
}

export class ClusterAgent {
  readonly enforcer: Enforcer;
  private readonly policies: Reflector<EgressPolicy>;
  private readonly sets: Reflector<EgressAddressSet>;
  private readonly node: Reflector<NodeInfo>;
  /** Every Node, reduced to its addresses. */
  private readonly allNodes: Reflector<NodeAddresses>;
  private nodeAddresses: string[] = [];
  private nodeTimer: NodeJS.Timeout | null = null;
  private readonly slices: Reflector<EndpointSlice>;
  private readonly reports: ReportWriter;
  private readonly kicker: Kicker;
  private readonly owner: OwnerWatch | null;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly heap = new HeapTrimmer(() => this.kicker.busy);
  private server: Server | null = null;
  private last: { result: EnforceResult; hash: string; at: string } | null = null;
  private lastLoop = Date.now();
  private waitingForLock = false;

  constructor(
    private readonly client: KubeClient,
    nft: NftExecutor,
    private readonly opts: ClusterAgentOptions,
    private readonly log: Logger,
  ) {
    const confirmation =
      opts.confirmTimeoutMs > 0
        ? { check: () => client.reachable(opts.nodeName, 2000), deadlineMs: opts.confirmTimeoutMs, intervalMs: 1000, retryMs: 10 * 60_000, ...(opts.rulesets ? { saved: opts.rulesets } : {}) }
        : undefined;
    this.enforcer = new Enforcer(nft, opts.build, log, confirmation, opts.policyNames);
    const group = "nftegress.io";
    this.policies = new Reflector(client, customSource(client, group, "v1alpha1", "egresspolicies"), parser(EgressPolicy), log, { keepLastGood: true });
    this.sets = new Reflector(client, customSource(client, group, "v1alpha1", "egressaddresssets"), parser({ safeParse: parseAddressSet }), log, { keepLastGood: true });
    this.node = new Reflector(client, nodeSource(client, `metadata.name=${opts.nodeName}`), parser(NodeInfo), log);
    this.allNodes = new Reflector(client, nodeSource(client), parser(NodeAddresses), log);
    this.slices = new Reflector(client, endpointSliceSource(client, "default", "kubernetes.io/service-name=kubernetes"), parser(EndpointSlice), log);
    this.reports = new ReportWriter(client, opts.reportIntervalMs, log);
    this.owner = opts.owner ? new OwnerWatch(client, opts.owner, log) : null;
    this.kicker = new Kicker(() => this.reconcile(), (e) => this.log.error({ error: String(e) }, "reconcile failed"));
  }

  private get synced(): boolean {
    return this.policies.hasSynced && this.sets.hasSynced && this.node.hasSynced && this.slices.hasSynced && this.allNodes.hasSynced;
  }

  /** Node objects change often (conditions, images): re-apply only when the addresses do,
   *  checked at most every NODE_SETTLE_MS however many Nodes changed meanwhile. */
  private nodesChanged(): void {
    if (this.nodeTimer) return;
    this.nodeTimer = setTimeout(() => {
      this.nodeTimer = null;
      const next = clusterNodeAddresses(this.allNodes.items());
      if (next.length === this.nodeAddresses.length && next.every((a, i) => a === this.nodeAddresses[i])) return;
      this.nodeAddresses = next;
      this.kicker.kick();
    }, NODE_SETTLE_MS);
  }

  async start(): Promise<void> {
    this.server = await serveMetrics(this.opts.metricsAddress, this.enforcer.metrics.registry, {
      live: () => this.waitingForLock || Date.now() - this.lastLoop < 60_000,
      ready: () => this.enforcer.applied,
    });
    await this.takeLock();
    for (const r of [this.policies, this.sets, this.node, this.slices]) {
      r.onChange(() => this.kicker.kick());
      r.start();
    }
    this.allNodes.onChange(() => this.nodesChanged());
    this.allNodes.start();
    this.owner?.start();
    this.log.info({ node: this.opts.nodeName, server: this.client.server, metrics: this.opts.metricsAddress }, "agent started");
    this.timers.push(
      setInterval(() => {
        this.lastLoop = Date.now();
        if (this.enforcer.cgroupsChanged(this.policies.items())) this.kicker.kick();
        void this.enforcer.refreshFqdns({ policies: this.policies.items(), addressSets: this.sets.items() }).then((changed) => changed && this.kicker.kick());
      }, 2000),
    );
    this.timers.push(setInterval(() => void (this.kicker.busy ? undefined : this.enforcer.repairDrift()), this.opts.driftIntervalMs));
    this.timers.push(setInterval(() => void this.refreshCounters(), this.opts.countersIntervalMs));
  }

  /** Stops; removes the table only when the own DaemonSet is deleted, else fail-static. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    if (this.nodeTimer) clearTimeout(this.nodeTimer);
    this.heap.stop();
    this.reports.stop();
    const owner = this.owner ? await this.owner.state(2000) : "present";
    await Promise.all([this.policies, this.sets, this.node, this.allNodes, this.slices, this.owner].map((r) => r?.stop()));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    await this.kicker.idle();
    try {
      if (owner !== "deleted") {
        this.log.info({ owner }, "stopping; the applied ruleset stays enforced");
        return;
      }
      try {
        await this.enforcer.syncer.remove();
        this.log.warn({ daemonset: this.opts.owner }, "own DaemonSet deleted (uninstall): table removed");
      } catch (e) {
        this.log.error({ error: e instanceof Error ? e.message : String(e) }, "own DaemonSet deleted, but removing the table failed");
      }
    } finally {
      this.opts.lock?.release();
    }
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

  private async reconcile(): Promise<void> {
    if (!this.synced) return;
    if (!this.nodeAddresses.length) this.nodeAddresses = clusterNodeAddresses(this.allNodes.items());
    const node = this.node.get(this.opts.nodeName);
    if (!node) {
      this.log.warn({ node: this.opts.nodeName }, "own Node object not found, keeping the current ruleset");
      return;
    }
    this.enforcer.metrics.invalidObjects.set({ kind: "EgressPolicy" }, this.policies.invalidObjects().length);
    this.enforcer.metrics.invalidObjects.set({ kind: "EgressAddressSet" }, this.sets.invalidObjects().length);
    const result = await this.enforcer.enforce({
      policies: this.policies.items(),
      addressSets: this.sets.items(),
      nodeLabels: node.metadata.labels ?? {},
      apiServers: this.opts.guardApiServer === false ? [] : apiServerEndpoints(this.slices.items(), this.client.server),
      localPods: node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []),
      invalid: this.policies.invalidObjects().map(invalidPolicy),
      nodeAddresses: this.nodeAddresses,
      ...(node.metadata.annotations?.[SUSPEND_ANNOTATION] === "true" ? { suspend: `node annotation ${SUSPEND_ANNOTATION}=true` } : {}),
    });
    const applied = this.enforcer.syncer.current;
    const hash = (applied ? rulesetHash(applied) : createHash("sha256").update("{}").digest("hex")).slice(0, 16);
    const at = !this.last || this.last.hash !== hash ? new Date().toISOString().replace(/\.\d+Z$/, "Z") : this.last.at;
    this.last = { result, hash, at };
    await this.refreshCounters();
    this.heap.workDone();
  }

  private async refreshCounters(): Promise<void> {
    const node = this.node.get(this.opts.nodeName);
    if (!this.last || !node) return;
    const kernel = await this.enforcer.refreshCounters();
    this.reports.offer(buildReport({ name: node.metadata.name, uid: node.metadata.uid }, this.last.result.results, kernel, this.last.hash, this.last.at, this.enforcer.guard));
  }

  get reportWrites(): number {
    return this.reports.writes;
  }
}
