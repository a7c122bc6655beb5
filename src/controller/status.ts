// EgressPolicy.status from the node reports, with kstatus conditions (Ready, Stalled, Reconciling)
// and the Events worth emitting for the change from the previous status. Pure: the only clock
// is the injected `now`, and the same input gives the same output, so the controller can skip
// the write when statusEqual(previous, computed) (one status write per policy per change).
//
// Health checks: kstatus (Flux, kpt, cli-utils) walks the conditions in order and the first of
// Reconciling=True (InProgress) or Stalled=True (Failed) decides; otherwise the resource is
// Current. Stalled is therefore listed before Reconciling, so a policy that failed on one node
// reports Failed even while other nodes are still pending. Ready is for humans, `kubectl wait
// --for=condition=Ready` and Argo CD health scripts.
//
// A policy that selects no node is Ready=True with reason NoNodesSelected and a Warning Event,
// with Reconciling and Stalled False. It is not an error the controller can resolve (nodes may
// appear later, and a policy prepared ahead of its nodes is legitimate), so Stalled would fail
// every GitOps sync that ships it; Ready=False would make `kubectl wait` and Argo CD hang until
// their timeouts. Instead the reason, the message and the Event say plainly that the policy is
// enforced nowhere, never a silent no-op.
//
// Selected nodes whose agent is suspended (break-glass) count as `nodes.suspended`, not as
// applied, failed or pending (see aggregate.ts). With nothing pending and nothing failed the
// policy is Ready=True with reason NodesSuspended, the message naming the nodes, plus a Warning
// Event when more nodes become suspended: the suspension is an admin's deliberate act and must
// not block every policy rollout for as long as it lasts.
import type { Condition } from "../api/common.js";
import type { EgressPolicy, EgressPolicyStatus, EgressPolicySpec } from "../api/policy.js";
import type { NodeEgressReport } from "../api/report.js";
import { aggregate, type Aggregate, type NodeCounts, type NodeInfo } from "./aggregate.js";

export interface StatusInput {
  policy: EgressPolicy;
  nodes: readonly NodeInfo[];
  reports: readonly NodeEgressReport[];
  /** Names of the existing EgressAddressSets (setName of every chunk). */
  addressSetNames: ReadonlySet<string>;
  now: Date;
  /** aggregate() of this policy at its generation over these nodes and reports, when already
   *  computed (aggregateAll for every policy at once); computed here otherwise. */
  aggregate?: Aggregate;
}

export interface StatusEvent {
  type: "Normal" | "Warning";
  reason: string;
  message: string;
}

export interface StatusResult {
  status: EgressPolicyStatus;
  events: StatusEvent[];
}

export const SUSPEND_ANNOTATION = "nftegress.io/suspend";
const MAX_LISTED_PROBLEMS = 5;

/** metav1.Time format: RFC 3339 in UTC with whole seconds. */
export function timestamp(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, "Z");
}

export interface UnknownSetReference {
  rule: string;
  set: string;
}

/** Semantic validation the CRD cannot express: every referenced address set must exist. */
export function unknownAddressSets(spec: EgressPolicySpec, addressSetNames: ReadonlySet<string>): UnknownSetReference[] {
  const out: UnknownSetReference[] = [];
  for (const rule of spec.rules) {
    for (const set of new Set(rule.to?.addressSets ?? [])) {
      if (!addressSetNames.has(set)) out.push({ rule: rule.name, set });
    }
  }
  return out;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function listed(items: readonly string[], total: number, separator: string): string {
  const more = total - items.length;
  return items.join(separator) + (more > 0 ? `${separator}and ${more} more` : "");
}

/** "3 of 5 selected nodes applied generation 4 (1 pending, 1 failed)". */
export function progressMessage(c: NodeCounts, generation: number): string {
  const extra: string[] = [];
  if (c.pending) extra.push(`${c.pending} pending`);
  if (c.failed) extra.push(`${c.failed} failed`);
  if (c.suspended) extra.push(`${c.suspended} suspended`);
  return `${c.applied} of ${plural(c.selected, "selected node")} applied generation ${generation}` + (extra.length ? ` (${extra.join(", ")})` : "");
}

function validationMessage(refs: readonly UnknownSetReference[]): string {
  const shown = refs.slice(0, MAX_LISTED_PROBLEMS).map((r) => `rule "${r.rule}" references unknown EgressAddressSet "${r.set}"`);
  return listed(shown, refs.length, "; ");
}

function failureMessage(agg: Aggregate, generation: number): string {
  const first = agg.failedNodes[0];
  const head = `${agg.counts.failed} of ${plural(agg.counts.selected, "selected node")} failed generation ${generation}`;
  return first ? `${head}; first: ${first.node}: ${first.message}` : head;
}

function suspendedMessage(agg: Aggregate, generation: number): string {
  return `${progressMessage(agg.counts, generation)}; suspended by the node annotation ${SUSPEND_ANNOTATION}, the policy is not enforced on: ${listed(agg.suspendedNodes, agg.counts.suspended, ", ")}`;
}

interface Verdict {
  ready: Omit<Condition, "lastTransitionTime" | "observedGeneration">;
  stalled: Omit<Condition, "lastTransitionTime" | "observedGeneration">;
  reconciling: Omit<Condition, "lastTransitionTime" | "observedGeneration">;
}

function verdict(agg: Aggregate, invalid: readonly UnknownSetReference[], generation: number, totalNodes: number): Verdict {
  const c = agg.counts;
  const progress = progressMessage(c, generation);
  const causes: string[] = [];
  if (invalid.length) causes.push(validationMessage(invalid));
  if (c.failed) causes.push(failureMessage(agg, generation));
  const stalledReason = invalid.length ? "UnknownAddressSet" : c.failed ? "NodeFailures" : undefined;

  const stalled = stalledReason
    ? { type: "Stalled", status: "True" as const, reason: stalledReason, message: causes.join("; ") }
    : { type: "Stalled", status: "False" as const, reason: "NoFailures", message: "no unknown address sets and no node failures" };

  const noNodes = `spec.nodeSelector selects none of the ${plural(totalNodes, "node")}: this policy is enforced nowhere`;
  const reconciling = c.pending
    ? { type: "Reconciling", status: "True" as const, reason: "Progressing", message: progress }
    : { type: "Reconciling", status: "False" as const, reason: "NoNodesPending", message: c.selected ? progress : noNodes };

  let ready: Verdict["ready"];
  if (stalledReason) ready = { type: "Ready", status: "False", reason: stalledReason, message: stalled.message };
  else if (c.pending) ready = { type: "Ready", status: "False", reason: "Progressing", message: progress };
  else if (!c.selected) ready = { type: "Ready", status: "True", reason: "NoNodesSelected", message: noNodes };
  else if (c.suspended) ready = { type: "Ready", status: "True", reason: "NodesSuspended", message: suspendedMessage(agg, generation) };
  else ready = { type: "Ready", status: "True", reason: "Applied", message: `generation ${generation} applied on all ${plural(c.selected, "selected node")}` };

  return { ready, stalled, reconciling };
}

/** A condition, keeping the previous lastTransitionTime when its status did not change. */
function condition(c: Verdict["ready"], previous: readonly Condition[] | undefined, generation: number, now: string): Condition {
  const prev = previous?.find((p) => p.type === c.type);
  return {
    type: c.type,
    status: c.status,
    observedGeneration: generation,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : now,
    reason: c.reason,
    message: c.message,
  };
}

export function computeStatus(input: StatusInput): StatusResult {
  const { policy, now } = input;
  const prev = policy.status;
  // The API server always sets metadata.generation; 1 matches the agent's default.
  const generation = policy.metadata.generation ?? 1;
  const agg = input.aggregate ?? aggregate(policy, input.nodes, input.reports, generation);
  const invalid = unknownAddressSets(policy.spec, input.addressSetNames);
  const nowText = timestamp(now);

  // lastChangeTime marks the generation the controller first saw; deniedSinceLastChange grows
  // by the increase of the summed denied packets since the last computation (deniedBaseline).
  // When the sum drops (a node rebooted and its counters restarted, or a node left the
  // selection) it re-baselines instead: never negative, and it under-counts rather than counts
  // twice. A node joining the selection brings its whole counter, which is counted (the status
  // cannot afford per-node baselines at 5,000 nodes).
  const generationChanged = prev?.observedGeneration !== generation || prev.lastChangeTime === undefined;
  const sum = agg.denied.packets;
  const lastChangeTime = generationChanged ? nowText : (prev?.lastChangeTime ?? nowText);
  const deniedSinceLastChange = generationChanged ? 0 : (prev?.deniedSinceLastChange ?? 0) + Math.max(0, sum - (prev?.deniedBaseline ?? sum));

  const v = verdict(agg, invalid, generation, new Set(input.nodes.map((n) => n.name)).size);
  const conditions = [v.ready, v.stalled, v.reconciling].map((c) => condition(c, prev?.conditions, generation, nowText));

  const status: EgressPolicyStatus = {
    observedGeneration: generation,
    conditions,
    nodes: { ...agg.counts },
    failedNodes: agg.failedNodes,
    denied: agg.denied,
    wouldDeny: agg.wouldDeny,
    topDeniedDestinations: agg.topDeniedDestinations,
    deniedByUser: agg.deniedByUser,
    lastChangeTime,
    deniedSinceLastChange,
    deniedBaseline: sum,
  };
  return { status, events: events(prev, v, agg, generation) };
}

const ROLLED_OUT = new Set(["Applied", "NodesSuspended"]);

/** The transitions from `prev` to `next` worth an Event; nothing when nothing changed. */
function events(prev: EgressPolicyStatus | undefined, v: Verdict, agg: Aggregate, generation: number): StatusEvent[] {
  const out: StatusEvent[] = [];
  const sameGeneration = prev?.observedGeneration === generation;
  const was = (type: string) => prev?.conditions?.find((c) => c.type === type);
  const prevStalled = was("Stalled");
  const prevReady = was("Ready");
  const c = agg.counts;

  const stalledNow = v.stalled.status === "True";
  const stalledBefore = prevStalled?.status === "True";
  const stalledEvent = stalledNow && (!stalledBefore || prevStalled?.reason !== v.stalled.reason || !sameGeneration);
  if (stalledEvent) out.push({ type: "Warning", reason: v.stalled.reason, message: v.stalled.message });

  // More failed nodes than before (for this generation), unless the Stalled event just said so.
  const prevFailed = sameGeneration ? (prev?.nodes?.failed ?? 0) : 0;
  if (c.failed > prevFailed && !(stalledEvent && v.stalled.reason === "NodeFailures")) {
    out.push({ type: "Warning", reason: "NodeFailures", message: failureMessage(agg, generation) });
  }

  if (c.suspended > (prev?.nodes?.suspended ?? 0)) {
    out.push({
      type: "Warning",
      reason: "NodesSuspended",
      message: `${plural(c.suspended, "selected node")} suspended by the node annotation ${SUSPEND_ANNOTATION}, the policy is not enforced on: ${listed(agg.suspendedNodes, c.suspended, ", ")}`,
    });
  }

  const readyChanged = !sameGeneration || prevReady?.status !== v.ready.status || prevReady.reason !== v.ready.reason;
  if (v.ready.reason === "NoNodesSelected" && readyChanged) {
    out.push({ type: "Warning", reason: "NoNodesSelected", message: v.ready.message });
  }

  if (stalledBefore && !stalledNow) {
    out.push({ type: "Normal", reason: "Recovered", message: `no longer stalled: ${progressMessage(c, generation)}` });
  }

  // Rolled out: every selected node that is not suspended applied this generation. A node
  // becoming suspended after the rollout is the NodesSuspended event's business, not a rollout.
  const suspendedAfterRollout = sameGeneration && prevReady?.reason === "Applied" && v.ready.reason === "NodesSuspended";
  if (ROLLED_OUT.has(v.ready.reason) && c.applied > 0 && readyChanged && !suspendedAfterRollout) {
    out.push({ type: "Normal", reason: "RolledOut", message: v.ready.reason === "Applied" ? v.ready.message : progressMessage(c, generation) });
  }
  return out;
}

/**
 * Deep equality of two statuses as the API server would store them (properties whose value is
 * undefined count as absent). Nothing is ignored: computeStatus keeps every timestamp of an
 * unchanged status, so equal means "no write needed".
 */
export function statusEqual(a: EgressPolicyStatus | undefined, b: EgressPolicyStatus | undefined): boolean {
  return jsonEqual(a, b);
}

function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => jsonEqual(x, b[i]));
  }
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = (r: Record<string, unknown>) => Object.keys(r).filter((k) => r[k] !== undefined);
  const ka = keys(ra);
  if (ka.length !== keys(rb).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(rb, k) && jsonEqual(ra[k], rb[k]));
}
