// The controller: folds NodeEgressReports into each EgressPolicy's status (one write per
// policy per change, not per report), validates what a CRD cannot (unknown address sets),
// and records Events on transitions. Level-triggered: any change enqueues the policies (at
// most one round per batch interval, see ControllerOptions.batchMs), and reconcile(policy)
// recomputes the status from the stores (the aggregates of all policies once per round, in
// one pass over the reports). Only the leader writes.
import type { Logger } from "pino";
import { parser } from "../api/parse.js";
import { API_VERSION } from "../api/common.js";
import { parseAddressSet, setName, type EgressAddressSet } from "../api/addressset.js";
import { NodeInfo } from "../api/kube.js";
import { EgressPolicy } from "../api/policy.js";
import { NodeEgressReport } from "../api/report.js";
import { FIELD_MANAGER_CONTROLLER, k8s, kubeError, type KubeClient } from "../kube/client.js";
import { WorkQueue, runWorkers, type Action } from "../kube/queue.js";
import { Reflector, customSource, nodeSource } from "../kube/reflector.js";
import type { ControllerMetrics } from "../metrics/metrics.js";
import { aggregateAll, type Aggregate, type NodeInfo as NodeLabels } from "./aggregate.js";
import { Interner, compactReport } from "./compact.js";
import { computeStatus, statusEqual, type StatusEvent } from "./status.js";
import type { ControllerHealthInput } from "./health.js";

const GROUP = "nftegress.io";
const VERSION = "v1alpha1";


export interface ControllerOptions {
  workers: number;
  eventNamespace: string;
  identity: string;
  /**
   * Store changes are folded into at most one reconcile of every policy per this interval
   * (default 1000 ms): the first change reconciles at once, later ones within the interval
   * once at its end. Status writes are so bounded by policies x (60 s / interval) per minute
   * however many reports change (5,000 nodes rolling out report thousands of times a minute),
   * and a burst of watch events is not starved by reconciles that each recompute a policy
   * from every report.
   */
  batchMs?: number;
}

export class Controller {
  private readonly policies: Reflector<EgressPolicy>;
  private readonly reports: Reflector<NodeEgressReport>;
  private readonly nodes: Reflector<NodeInfo>;
  private readonly sets: Reflector<EgressAddressSet>;
  private queue = new WorkQueue();
  private workers: Promise<void> | null = null;
  private batchTimer: NodeJS.Timeout | null = null;
  private changedInBatch = false;
  /** Every policy's aggregate, computed together by the first reconcile of a round (all
   *  policies enqueued after a change) and used by the round's other reconciles. A change
   *  after it was computed always queues another round (changed()), which recomputes it. */
  private round: { policies: Map<string, EgressPolicy>; nodes: NodeLabels[]; aggregates: Map<string, Aggregate> } | null = null;
  statusWrites = 0;
  private leading = false;
  private lastTick = Date.now();
  private ticker: NodeJS.Timeout | null = null;
  /** Reconciles running now: their start times, by a sequence number. */
  private readonly running = new Map<number, number>();
  private runs = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly metrics: ControllerMetrics,
    private readonly opts: ControllerOptions,
    private readonly log: Logger,
  ) {
    this.policies = new Reflector(client, customSource(client, GROUP, VERSION, "egresspolicies"), parser(EgressPolicy), log);
    const parseReport = parser(NodeEgressReport);
    const strings = new Interner();
    // Kept compact: the controller holds every node's report (see compact.ts).
    this.reports = new Reflector(client, customSource(client, GROUP, VERSION, "nodeegressreports"), (raw) => {
      const r = parseReport(raw);
      return "error" in r ? r : compactReport(r, strings);
    }, log);
    this.nodes = new Reflector(client, nodeSource(client), parser(NodeInfo), log);
    this.sets = new Reflector(client, customSource(client, GROUP, VERSION, "egressaddresssets"), parser({ safeParse: parseAddressSet }), log);
  }

  private get synced(): boolean {
    return this.policies.hasSynced && this.reports.hasSynced && this.nodes.hasSynced && this.sets.hasSynced;
  }

  private enqueueAll(): void {
    if (!this.synced) return;
    this.round = null;
    for (const p of this.policies.items()) this.queue.add(p.metadata.name);
    this.metrics.queueDepth.set(this.queue.depth);
  }

  /** A store changed: reconcile every policy now, or once at the end of the current interval. */
  private changed(): void {
    if (this.batchTimer) {
      this.changedInBatch = true;
      return;
    }
    this.enqueueAll();
    this.batchTimer = setTimeout(() => {
      this.batchTimer = null;
      if (this.changedInBatch) {
        this.changedInBatch = false;
        this.changed();
      }
    }, this.opts.batchMs ?? 1000);
    this.batchTimer.unref();
  }

  /** What /readyz and /healthz judge (health.ts). */
  health(now = Date.now()): ControllerHealthInput {
    const watches = [this.policies, this.reports, this.nodes, this.sets].map((r) => ({ name: r.name, hasSynced: r.hasSynced, failingSince: r.failingSince }));
    let oldest: number | null = null;
    for (const t of this.running.values()) if (oldest === null || t < oldest) oldest = t;
    return { watches, leader: this.leading, lastTick: this.lastTick, oldestReconcile: oldest, now };
  }

  private async tracked(key: string): Promise<Action> {
    const id = this.runs++;
    this.running.set(id, Date.now());
    try {
      return await this.reconcile(key);
    } finally {
      this.running.delete(id);
    }
  }

  /** Starts the watches (followers keep warm caches too). */
  startWatching(): void {
    this.ticker ??= setInterval(() => (this.lastTick = Date.now()), 2000);
    this.ticker.unref();
    for (const r of [this.policies, this.reports, this.nodes, this.sets]) {
      r.onChange(() => this.changed());
      r.start();
    }
  }

  /** Leadership changes run one after another, so a quick lose-then-win cannot race. */
  private transition: Promise<void> = Promise.resolve();

  /** Starts writing: called when this replica becomes the leader. */
  startLeading(): Promise<void> {
    this.transition = this.transition.then(() => {
      this.metrics.leader.set(1);
      this.leading = true;
      this.workers ??= runWorkers(this.queue, this.opts.workers, (key) => this.tracked(key), (key, e, retryMs) => {
        this.metrics.reconciles.inc({ result: "error" });
        this.log.warn({ policy: key, error: kubeError(e).message, retryMs }, "reconcile failed, retrying");
      });
      this.enqueueAll();
    });
    return this.transition;
  }

  /** Stops writing (lost the lease); watches go on, so leading again starts warm. */
  stopLeading(): Promise<void> {
    this.transition = this.transition.then(async () => {
      this.metrics.leader.set(0);
      this.leading = false;
      this.queue.shutdown();
      await this.workers;
      this.workers = null;
      this.queue = new WorkQueue();
    });
    return this.transition;
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = null;
    this.queue.shutdown();
    await this.workers;
    await Promise.all([this.policies, this.reports, this.nodes, this.sets].map((r) => r.stop()));
  }

  async reconcile(name: string): Promise<Action> {
    const started = performance.now();
    this.metrics.queueDepth.set(this.queue.depth);
    const policy = this.policies.get(name);
    if (!policy) {
      for (const state of ["applied", "failed", "pending", "suspended"]) this.metrics.policyNodes.remove({ policy: name, state });
      this.metrics.policyDenied.remove({ policy: name });
      this.metrics.policyWouldDeny.remove({ policy: name });
      return "done";
    }
    const round = this.currentRound();
    // The round's aggregate, unless the policy changed since the round began (another round
    // is queued then); computeStatus then aggregates it alone, from the stores as they are.
    const aggregate = round.policies.get(name) === policy ? round.aggregates.get(name) : undefined;
    const { status, events } = computeStatus({
      policy,
      nodes: aggregate ? round.nodes : this.nodeLabels(),
      reports: this.reports.items(),
      addressSetNames: new Set(this.sets.items().map(setName)),
      now: new Date(),
      ...(aggregate ? { aggregate } : {}),
    });
    if (status.nodes) {
      for (const [state, value] of Object.entries(status.nodes)) if (state !== "selected") this.metrics.policyNodes.set({ policy: name, state }, value);
    }
    this.metrics.policyDenied.set({ policy: name }, status.denied?.packets ?? 0);
    this.metrics.policyWouldDeny.set({ policy: name }, status.wouldDeny?.packets ?? 0);
    if (statusEqual(policy.status, status)) {
      this.metrics.reconciles.inc({ result: "unchanged" });
      this.metrics.reconcileDuration.observe((performance.now() - started) / 1000);
      return "done";
    }
    await this.client.custom.patchClusterCustomObjectStatus(
      { group: GROUP, version: VERSION, plural: "egresspolicies", name, body: { apiVersion: API_VERSION, kind: "EgressPolicy", metadata: { name }, status }, fieldManager: FIELD_MANAGER_CONTROLLER, force: true },
      this.client.serverSideApply(),
    );
    this.statusWrites++;
    this.metrics.reconciles.inc({ result: "written" });
    this.metrics.reconcileDuration.observe((performance.now() - started) / 1000);
    for (const e of events) await this.event(policy, e);
    return "done";
  }

  private nodeLabels(): NodeLabels[] {
    return this.nodes.items().map((n) => ({ name: n.metadata.name, labels: n.metadata.labels ?? {} }));
  }

  /** The stores' state at the first reconcile of this round, with every policy's aggregate. */
  private currentRound(): NonNullable<Controller["round"]> {
    if (!this.round) {
      const policies = this.policies.items();
      const nodes = this.nodeLabels();
      this.round = { policies: new Map(policies.map((p) => [p.metadata.name, p])), nodes, aggregates: aggregateAll(policies, nodes, this.reports.items()) };
    }
    return this.round;
  }

  private async event(policy: EgressPolicy, e: StatusEvent): Promise<void> {
    try {
      const now = new Date();
      await this.client.core.createNamespacedEvent(
        {
          namespace: this.opts.eventNamespace,
          fieldManager: FIELD_MANAGER_CONTROLLER,
          body: {
            metadata: { generateName: `${policy.metadata.name}.` },
            involvedObject: { apiVersion: API_VERSION, kind: "EgressPolicy", name: policy.metadata.name, ...(policy.metadata.uid ? { uid: policy.metadata.uid } : {}) },
            type: e.type,
            reason: e.reason,
            message: e.message.slice(0, 1000),
            source: { component: "nftegress-controller" },
            reportingComponent: "nftegress-controller",
            reportingInstance: this.opts.identity,
            firstTimestamp: now,
            lastTimestamp: now,
            count: 1,
            eventTime: new k8s.V1MicroTime(now.getTime()),
            action: "Reconcile",
          },
        },
        this.client.options(),
      );
    } catch (err) {
      this.log.warn({ policy: policy.metadata.name, reason: e.reason, error: kubeError(err).message }, "recording an event failed");
    }
  }
}
