// The controller's /readyz, /healthz and leader gauge against a real kube-apiserver, with two
// replicas run as processes: readyz answers 503 before the watches synced and while the API
// server is gone for longer than the grace, 200 after; exactly one replica leads, and the
// other takes over when it stops.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { eventually, startController, type AgentProcess } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

function leaderGauge(metrics: string): number {
  const line = metrics.split("\n").find((l) => l.startsWith("nftegress_controller_leader "));
  return line ? Number(line.split(" ").pop()) : NaN;
}

const answer = async (c: AgentProcess, path: string) => {
  try {
    return await c.get(path);
  } catch {
    return { status: 0, text: "" };
  }
};

describe("controller health on a real API server", () => {
  let cluster: Cluster;
  const replicas: AgentProcess[] = [];

  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.stop("SIGTERM")));
    await cluster?.stop();
  });

  it("readyz: 503 before the watches synced and while the API server is gone, 200 after; healthz stays 200", async () => {
    const a = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "a", "--lease-duration", "3"]);
    replicas.push(a);
    const ready = await eventually("a ready", () => answer(a, "/readyz"), (r) => r.status === 200, 20_000);
    assert.match(ready.text, /^ok\nleader: (true|false)\n$/);
    assert.equal((await a.get("/healthz")).status, 200);

    // The API server goes away for 15 s; a second replica starts meanwhile (it cannot sync).
    const outage = cluster.restartApiServer({ downMs: 15_000 });
    await new Promise((r) => setTimeout(r, 500));
    const b = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "b", "--lease-duration", "3"]);
    replicas.push(b);
    const early = await eventually("b answers", () => answer(b, "/readyz"), (r) => r.status !== 0, 10_000);
    assert.equal(early.status, 503, early.text);
    assert.match(early.text, /not ready: watch \w+ not synced/);
    const down = await eventually("a unready while the API server is down", () => answer(a, "/readyz"), (r) => r.status === 503, 12_000);
    assert.match(down.text, /watch \w+ failing for \d+ s/);
    assert.equal((await a.get("/healthz")).status, 200, "a lost API server is not a stuck loop");
    assert.equal((await b.get("/readyz")).status, 503, "b still not synced");
    await outage;
    await eventually("a ready again", () => answer(a, "/readyz"), (r) => r.status === 200, 45_000);
    await eventually("b ready after its first sync", () => answer(b, "/readyz"), (r) => r.status === 200, 45_000);
  });

  it("exactly one replica leads (gauge and readyz body); the other is ready and takes over", async () => {
    const [a, b] = replicas as [AgentProcess, AgentProcess];
    const state = async () => Promise.all([a, b].map(async (c) => ({ gauge: leaderGauge((await c.get("/metrics")).text), ready: await c.get("/readyz") })));
    const s = await eventually("one leader", state, (x) => x[0]?.gauge !== undefined && (x[0].gauge + (x[1]?.gauge ?? 0)) === 1 && x.every((y) => y.ready.status === 200), 20_000);
    const leaderIdx = s[0]?.gauge === 1 ? 0 : 1;
    const leader = [a, b][leaderIdx] as AgentProcess;
    const follower = [a, b][1 - leaderIdx] as AgentProcess;
    assert.match(s[leaderIdx]?.ready.text ?? "", /leader: true/);
    assert.match(s[1 - leaderIdx]?.ready.text ?? "", /leader: false/);
    assert.equal(s[1 - leaderIdx]?.gauge, 0);
    await leader.stop("SIGTERM");
    replicas.splice(replicas.indexOf(leader), 1);
    const after = await eventually("the follower leads", async () => ({ gauge: leaderGauge((await follower.get("/metrics")).text), ready: await follower.get("/readyz") }), (x) => x.gauge === 1, 15_000);
    assert.match(after.ready.text, /^ok\nleader: true\n$/);
  });
});
