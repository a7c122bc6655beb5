// Folds the NodeEgressReports of the nodes one policy selects into that policy's figures: rollout
// state per node, failed nodes, counter sums and merged top-K lists. Pure: no I/O, no clock.
import type { z } from "zod";
import type { EgressPolicy, TopDestination, UserDenials } from "../api/policy.js";
import type { NodeEgressReport, PolicyReport } from "../api/report.js";
import { selects } from "../policy/selector.js";

export type Destination = z.infer<typeof TopDestination>;
export type UserDenial = z.infer<typeof UserDenials>;

/** Length of every merged top list and of failedNodes. */
export const TOP_K = 10;
export const MAX_LISTED_NODES = 10;
/** Agent messages (nft errors) can be long; status keeps the start of each. */
export const MAX_NODE_MESSAGE = 256;

export interface NodeInfo {
  name: string;
  labels: Readonly<Record<string, string>>;
}

/**
 * Where one selected node stands with the policy's current generation:
 * - applied: its report has this generation with result Applied;
 * - failed: this generation with result Failed or RolledBack;
 * - suspended: result Suspended, whatever the generation. Break-glass (the node annotation
 *   nftegress.io/suspend) makes the agent keep the table dormant, so the node enforces nothing of
 *   this policy and will not converge until an admin lifts it. It is neither applied nor a
 *   failure, and not pending either: pending means "will converge by itself", and counting a
 *   suspended node there would keep Reconciling=True (a GitOps health check would hang) for as
 *   long as an incident lasts.
 * - pending: anything else (no report, no entry, an older or newer generation, including a
 *   failure of an older generation while the node has not reported the current one).
 */
export type NodeState = "applied" | "failed" | "suspended" | "pending";

export function nodeState(entry: PolicyReport | undefined, generation: number): NodeState {
  if (!entry) return "pending";
  if (entry.result === "Suspended") return "suspended";
  if (entry.generation !== generation) return "pending";
  return entry.result === "Applied" ? "applied" : "failed";
}

export interface NodeCounts {
  selected: number;
  applied: number;
  failed: number;
  pending: number;
  suspended: number;
}

export interface Counter {
  packets: number;
  bytes: number;
}

export interface Aggregate {
  counts: NodeCounts;
  /** The first MAX_LISTED_NODES failed nodes by name, message prefixed with the result. */
  failedNodes: { node: string; message: string }[];
  /** The first MAX_LISTED_NODES suspended nodes by name. */
  suspendedNodes: string[];
  denied: Counter;
  wouldDeny: Counter;
  topDeniedDestinations: Destination[];
  deniedByUser: UserDenial[];
}

/** Code-unit order: deterministic whatever the process locale. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Optional numbers sort absent first. */
function compareOptional(a: number | undefined, b: number | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return a - b;
}

function compareOptionalText(a: string | undefined, b: string | undefined): number {
  if (a === b) return 0;
  if (a === undefined) return -1;
  if (b === undefined) return 1;
  return compareText(a, b);
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 3)}...`;
}

/** The first report of each node name. */
function reportsByNode(reports: readonly NodeEgressReport[]): Map<string, NodeEgressReport> {
  const byNode = new Map<string, NodeEgressReport>();
  for (const r of reports) if (!byNode.has(r.metadata.name)) byNode.set(r.metadata.name, r);
  return byNode;
}

/** One policy's aggregate, built from its selected nodes in name order. */
class Accumulator {
  private readonly counts: NodeCounts = { selected: 0, applied: 0, failed: 0, pending: 0, suspended: 0 };
  private readonly failedNodes: { node: string; message: string }[] = [];
  private readonly suspendedNodes: string[] = [];
  private readonly denied: Counter = { packets: 0, bytes: 0 };
  private readonly wouldDeny: Counter = { packets: 0, bytes: 0 };
  private readonly destinations: (readonly Destination[])[] = [];
  private readonly users: (readonly UserDenial[])[] = [];

  constructor(private readonly generation: number) {}

  /** A selected node, with its report's entry for the policy if there is one. */
  add(node: string, entry: PolicyReport | undefined): void {
    const state = nodeState(entry, this.generation);
    this.counts.selected++;
    this.counts[state]++;
    if (state === "failed" && entry && this.failedNodes.length < MAX_LISTED_NODES) {
      this.failedNodes.push({ node, message: truncate(`${entry.result}: ${entry.message || "no message"}`, MAX_NODE_MESSAGE) });
    }
    if (state === "suspended" && this.suspendedNodes.length < MAX_LISTED_NODES) this.suspendedNodes.push(node);
    if (!entry) return;
    this.denied.packets += entry.denied.packets;
    this.denied.bytes += entry.denied.bytes;
    this.wouldDeny.packets += entry.wouldDeny.packets;
    this.wouldDeny.bytes += entry.wouldDeny.bytes;
    if (entry.topDeniedDestinations?.length) this.destinations.push(entry.topDeniedDestinations);
    if (entry.deniedByUser?.length) this.users.push(entry.deniedByUser);
  }

  result(): Aggregate {
    return {
      counts: this.counts,
      failedNodes: this.failedNodes,
      suspendedNodes: this.suspendedNodes,
      denied: this.denied,
      wouldDeny: this.wouldDeny,
      topDeniedDestinations: mergeDestinations(this.destinations),
      deniedByUser: mergeUsers(this.users),
    };
  }
}

/**
 * Aggregates the reports of the selected nodes for `policy` at `generation`. Reports of nodes
 * that no longer exist or that the policy no longer selects are ignored; a node without a
 * report is pending. Counters are summed whatever the node's state: the kernel counted them.
 */
export function aggregate(policy: EgressPolicy, nodes: readonly NodeInfo[], reports: readonly NodeEgressReport[], generation: number): Aggregate {
  const byNode = reportsByNode(reports);
  const selected = [...new Map(nodes.filter((n) => selects(policy.spec.nodeSelector, n.labels)).map((n) => [n.name, n])).keys()].sort(compareText);
  const acc = new Accumulator(generation);
  for (const node of selected) acc.add(node, byNode.get(node)?.status?.policies.find((p) => p.name === policy.metadata.name));
  return acc.result();
}

function selectsEverything(sel: EgressPolicy["spec"]["nodeSelector"]): boolean {
  return Object.keys(sel.matchLabels ?? {}).length === 0 && (sel.matchExpressions ?? []).length === 0;
}

/**
 * aggregate() of every policy (each at its own metadata.generation), in one pass over the
 * nodes: each report's entries are read once, in order, where aggregate() per policy would
 * search every report once per policy (50 policies x 5,000 nodes x 50 entries). Policy names
 * are unique (they come from one store); the results equal aggregate()'s.
 */
export function aggregateAll(policies: readonly EgressPolicy[], nodes: readonly NodeInfo[], reports: readonly NodeEgressReport[]): Map<string, Aggregate> {
  const byNode = reportsByNode(reports);
  // As aggregate(): a name is selected when a node of that name is, and listed once.
  const labelsByName = new Map<string, Readonly<Record<string, string>>[]>();
  for (const n of nodes) {
    const l = labelsByName.get(n.name);
    if (l) l.push(n.labels);
    else labelsByName.set(n.name, [n.labels]);
  }
  const names = [...labelsByName.keys()].sort(compareText);
  const accs = policies.map((p) => ({
    name: p.metadata.name,
    selector: p.spec.nodeSelector,
    everything: selectsEverything(p.spec.nodeSelector),
    acc: new Accumulator(p.metadata.generation ?? 1),
    /** The node (index into names) whose entry `entry` is: the first entry of that name wins. */
    seen: -1,
    entry: undefined as PolicyReport | undefined,
  }));
  const byPolicy = new Map(accs.map((a) => [a.name, a]));
  names.forEach((node, i) => {
    for (const e of byNode.get(node)?.status?.policies ?? []) {
      const a = byPolicy.get(e.name);
      if (a && a.seen !== i) {
        a.seen = i;
        a.entry = e;
      }
    }
    const labels = labelsByName.get(node) ?? [];
    for (const a of accs) {
      if (a.everything || labels.some((l) => selects(a.selector, l))) a.acc.add(node, a.seen === i ? a.entry : undefined);
    }
  });
  return new Map(accs.map((a) => [a.name, a.acc.result()]));
}

/**
 * Merges per-node top lists: entries with the same key are summed, `nodes` counts the nodes that
 * listed the key (once per node), and the result is the first `k` by packets descending, then by
 * key. Each node only sends its own top K, so the merge is the usual approximation: a
 * destination just below the cut on many nodes can be missing. Keys are compared field by field
 * (`bucket`, then `same` within a bucket): no key strings are built for 5,000 nodes' lists.
 */
function mergeTopK<T extends { packets: number }>(
  perNode: readonly (readonly T[])[],
  bucket: (t: T) => string | number,
  same: (a: T, b: T) => boolean,
  compareKey: (a: T, b: T) => number,
  k: number,
): { item: T; nodes: number }[] {
  interface Merged {
    item: T;
    nodes: number;
    /** The last node list that counted in `nodes`. */
    list: number;
  }
  const buckets = new Map<string | number, Merged[]>();
  const all: Merged[] = [];
  perNode.forEach((list, li) => {
    for (const t of list) {
      const b = bucket(t);
      let group = buckets.get(b);
      if (!group) {
        group = [];
        buckets.set(b, group);
      }
      const m = group.find((x) => same(x.item, t));
      if (!m) {
        const n: Merged = { item: { ...t }, nodes: 1, list: li };
        group.push(n);
        all.push(n);
      } else {
        m.item.packets += t.packets;
        if (m.list !== li) {
          m.nodes++;
          m.list = li;
        }
      }
    }
  });
  return all.sort((a, b) => b.item.packets - a.item.packets || compareKey(a.item, b.item)).slice(0, k);
}

export function mergeDestinations(perNode: readonly (readonly Destination[])[], k = TOP_K): Destination[] {
  return mergeTopK(
    perNode,
    (d) => d.address,
    (a, b) => a.port === b.port && a.protocol === b.protocol,
    (a, b) => compareText(a.address, b.address) || compareOptional(a.port, b.port) || compareText(a.protocol, b.protocol),
    k,
  ).map(({ item, nodes }) => ({
    address: item.address,
    ...(item.port === undefined ? {} : { port: item.port }),
    protocol: item.protocol,
    packets: item.packets,
    nodes,
  }));
}

export function mergeUsers(perNode: readonly (readonly UserDenial[])[], k = TOP_K): UserDenial[] {
  return mergeTopK(
    perNode,
    (u) => u.uid,
    (a, b) => a.user === b.user,
    (a, b) => a.uid - b.uid || compareOptionalText(a.user, b.user),
    k,
  ).map(({ item }) => (item.user === undefined ? { uid: item.uid, packets: item.packets } : { uid: item.uid, user: item.user, packets: item.packets }));
}
