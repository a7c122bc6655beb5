// The controller's /readyz and /healthz, from what it can observe of itself (pure, so each
// verdict is testable without waiting for a real failure):
// - ready: every watch (policies, reports, nodes, address sets) has synced once and none has
//   failed to list or watch for longer than a grace period (a replica that cannot see the API
//   server writes nothing useful); a follower with synced watches is ready too. The body says
//   whether this replica leads.
// - live: the event loop's tick is recent and no reconcile has been running for longer than
//   any API call may take (each has a 30 s timeout): a stuck loop is restarted by the kubelet.

export interface WatchHealth {
  name: string;
  hasSynced: boolean;
  failingSince: number | null;
}

export interface ControllerHealthInput {
  watches: readonly WatchHealth[];
  leader: boolean;
  /** Last tick of the controller's 2 s heartbeat timer. */
  lastTick: number;
  /** Start of the oldest reconcile still running, if any. */
  oldestReconcile: number | null;
  now: number;
}

export interface Verdict {
  ok: boolean;
  body: string;
}

export const WATCH_GRACE_MS = 5_000;
export const TICK_STALE_MS = 60_000;
export const RECONCILE_STUCK_MS = 5 * 60_000;

export function readiness(h: ControllerHealthInput, graceMs = WATCH_GRACE_MS): Verdict {
  const problems: string[] = [];
  for (const w of h.watches) {
    if (!w.hasSynced) problems.push(`watch ${w.name} not synced`);
    else if (w.failingSince !== null && h.now - w.failingSince > graceMs) problems.push(`watch ${w.name} failing for ${Math.round((h.now - w.failingSince) / 1000)} s`);
  }
  const leader = `leader: ${h.leader}`;
  return problems.length ? { ok: false, body: `not ready: ${problems.join("; ")}\n${leader}\n` } : { ok: true, body: `ok\n${leader}\n` };
}

export function liveness(h: ControllerHealthInput, tickStaleMs = TICK_STALE_MS, stuckMs = RECONCILE_STUCK_MS): Verdict {
  if (h.now - h.lastTick > tickStaleMs) return { ok: false, body: `stuck: no heartbeat for ${Math.round((h.now - h.lastTick) / 1000)} s\n` };
  if (h.oldestReconcile !== null && h.now - h.oldestReconcile > stuckMs) return { ok: false, body: `stuck: a reconcile has been running for ${Math.round((h.now - h.oldestReconcile) / 1000)} s\n` };
  return { ok: true, body: "ok\n" };
}
