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

/**
 * Aggregates the reports of the selected nodes for `policy` at `generation`. Reports of nodes
 * that no longer exist or that the policy no longer selects are ignored; a node without a
 * report is pending. Counters are summed whatever the node's state: the kernel counted them.
 */
export function aggregate(policy: EgressPolicy, nodes: readonly NodeInfo[], reports: readonly NodeEgressReport[], generation: number): Aggregate {
  const byNode = new Map<string, NodeEgressReport>();
  for (const r of reports) if (!byNode.has(r.metadata.name)) byNode.set(r.metadata.name, r);

  const selected = [...new Map(nodes.filter((n) => selects(policy.spec.nodeSelector, n.labels)).map((n) => [n.name, n])).keys()].sort(compareText);
  const counts: NodeCounts = { selected: selected.length, applied: 0, failed: 0, pending: 0, suspended: 0 };
  const failedNodes: { node: string; message: string }[] = [];
  const suspendedNodes: string[] = [];
  const denied: Counter = { packets: 0, bytes: 0 };
  const wouldDeny: Counter = { packets: 0, bytes: 0 };
  const destinations: Destination[][] = [];
  const users: UserDenial[][] = [];

  for (const node of selected) {
    const entry = byNode.get(node)?.status?.policies.find((p) => p.name === policy.metadata.name);
    const state = nodeState(entry, generation);
    counts[state]++;
    if (state === "failed" && entry && failedNodes.length < MAX_LISTED_NODES) {
      failedNodes.push({ node, message: truncate(`${entry.result}: ${entry.message || "no message"}`, MAX_NODE_MESSAGE) });
    }
    if (state === "suspended" && suspendedNodes.length < MAX_LISTED_NODES) suspendedNodes.push(node);
    if (!entry) continue;
    denied.packets += entry.denied.packets;
    denied.bytes += entry.denied.bytes;
    wouldDeny.packets += entry.wouldDeny.packets;
    wouldDeny.bytes += entry.wouldDeny.bytes;
    destinations.push(entry.topDeniedDestinations ?? []);
    users.push(entry.deniedByUser ?? []);
  }

  return {
    counts,
    failedNodes,
    suspendedNodes,
    denied,
    wouldDeny,
    topDeniedDestinations: mergeDestinations(destinations),
    deniedByUser: mergeUsers(users),
  };
}

/**
 * Merges per-node top lists: entries with the same key are summed, `nodes` counts the nodes that
 * listed the key (once per node), and the result is the first `k` by packets descending, then by
 * key. Each node only sends its own top K, so the merge is the usual approximation: a
 * destination just below the cut on many nodes can be missing.
 */
function mergeTopK<T extends { packets: number }>(
  perNode: readonly (readonly T[])[],
  key: (t: T) => string,
  compareKey: (a: T, b: T) => number,
  k: number,
): { item: T; nodes: number }[] {
  const merged = new Map<string, { item: T; nodes: number }>();
  for (const list of perNode) {
    const seen = new Set<string>();
    for (const t of list) {
      const id = key(t);
      const m = merged.get(id);
      if (!m) merged.set(id, { item: { ...t }, nodes: 1 });
      else {
        m.item.packets += t.packets;
        if (!seen.has(id)) m.nodes++;
      }
      seen.add(id);
    }
  }
  return [...merged.values()].sort((a, b) => b.item.packets - a.item.packets || compareKey(a.item, b.item)).slice(0, k);
}

export function mergeDestinations(perNode: readonly (readonly Destination[])[], k = TOP_K): Destination[] {
  return mergeTopK(
    perNode,
    (d) => JSON.stringify([d.address, d.port ?? null, d.protocol]),
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
    (u) => JSON.stringify([u.uid, u.user ?? null]),
    (a, b) => a.uid - b.uid || compareOptionalText(a.user, b.user),
    k,
  ).map(({ item }) => (item.user === undefined ? { uid: item.uid, packets: item.packets } : { uid: item.uid, user: item.user, packets: item.packets }));
}
