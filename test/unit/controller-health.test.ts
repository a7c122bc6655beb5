// The controller's readiness and liveness verdicts (src/controller/health.ts); the real API
// server tier (test/kube/controller-health.test.ts) checks them end to end.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { liveness, readiness, type ControllerHealthInput } from "../../src/controller/health.js";

const now = 1_000_000;
const synced = (name: string, failingSince: number | null = null) => ({ name, hasSynced: true, failingSince });
const base = (over: Partial<ControllerHealthInput> = {}): ControllerHealthInput => ({
  watches: ["egresspolicies", "nodeegressreports", "nodes", "egressaddresssets"].map((n) => synced(n)),
  leader: false,
  lastTick: now - 1000,
  oldestReconcile: null,
  now,
  ...over,
});

describe("controller health", () => {
  it("is ready when every watch has synced, leader or not, and says which", () => {
    assert.deepEqual(readiness(base()), { ok: true, body: "ok\nleader: false\n" });
    assert.deepEqual(readiness(base({ leader: true })), { ok: true, body: "ok\nleader: true\n" });
  });

  it("is not ready before a watch has synced", () => {
    const r = readiness(base({ watches: [synced("egresspolicies"), { name: "nodes", hasSynced: false, failingSince: null }] }));
    assert.equal(r.ok, false);
    assert.match(r.body, /watch nodes not synced/);
    assert.match(r.body, /leader: false/);
  });

  it("is not ready while a watch has failed for longer than the grace, ready within it", () => {
    assert.equal(readiness(base({ watches: [synced("nodes", now - 4_000)] })).ok, true, "a blip within 5 s");
    const r = readiness(base({ watches: [synced("nodes", now - 6_000)] }));
    assert.equal(r.ok, false);
    assert.match(r.body, /watch nodes failing for 6 s/);
  });

  it("is live while the heartbeat ticks and no reconcile is stuck", () => {
    assert.equal(liveness(base()).ok, true);
    assert.equal(liveness(base({ oldestReconcile: now - 60_000 })).ok, true, "a slow reconcile is not stuck");
    assert.match(liveness(base({ lastTick: now - 61_000 })).body, /^stuck: no heartbeat for 61 s/);
    assert.equal(liveness(base({ lastTick: now - 61_000 })).ok, false);
    const stuck = liveness(base({ oldestReconcile: now - 301_000 }));
    assert.equal(stuck.ok, false);
    assert.match(stuck.body, /a reconcile has been running for 301 s/);
  });
});
