// An API server that dies and comes back: the agent keeps enforcing meanwhile (fail-static),
// agent and controller recover without a restart of their own (relist after errors and 410
// Gone, rewatch after client-node's 30 s idle timeout), and no file descriptors pile up.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { z } from "zod";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, startController, type AgentProcess } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const Policy = z.object({
  metadata: z.object({ generation: z.number() }),
  status: z.object({ observedGeneration: z.number().optional(), denied: z.object({ packets: z.number() }).optional(), conditions: z.array(z.object({ type: z.string(), status: z.string() })).optional() }).optional(),
});

const policy = (allow: string[]) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: web}
spec:
  mode: Enforce
  rules:
    - {name: web, action: Allow, to: {cidrs: [${allow.map((a) => `"${a}"`).join(", ")}]}, ports: [{protocol: TCP, port: 443}]}
`;

const fds = (pid: number | undefined) => readdirSync(`/proc/${pid}/fd`).length;
/** Resident memory in MiB, from /proc. */
const rssMib = (pid: number | undefined) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;

describe("API server restarts", () => {
  let cluster: Cluster;
  let files: TempDir;
  let t: Topology;
  let agent: AgentProcess;
  let controller: AgentProcess;

  before(async () => {
    cluster = await startCluster();
    files = tempDir();
    t = await createTopology("res");
    const r = await cluster.kubectl(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: node-r, labels: {role: app}}\n");
    assert.equal(r.code, 0, r.stderr);
    agent = await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", "node-r", "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--report-interval", "1", "--state-dir", files.state]);
    controller = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "only", "--lease-duration", "3"]);
  });

  after(async () => {
    await agent?.stop("SIGTERM");
    await controller?.stop("SIGTERM");
    await cluster?.stop();
    await t?.close();
    files?.remove();
  });

  const kubectlApply = async (text: string) => {
    const r = await cluster.kubectl(["apply", "-f", "-"], text);
    assert.equal(r.code, 0, r.stderr);
  };
  const status = async () => Policy.parse(JSON.parse((await cluster.kubectl(["get", "egresspolicy", "web", "-o", "json"])).stdout));
  const enforcedFor = (addr: string, want: "connected" | "timeout", ms = 20_000) => eventually(`${addr} ${want}`, () => probeTcp(t, addr, 443, { timeoutMs: 500 }), (r) => r === want, ms);

  it("enforces and reports before any outage", async () => {
    await kubectlApply(policy(["192.0.2.10"]));
    await enforcedFor("192.0.2.20", "timeout");
    await eventually("Ready", status, (s) => s.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false, 20_000);
  });

  it("keeps enforcing while the API server is down, and recovers when it is back", async () => {
    const before = { agent: fds(agent.child.pid), controller: fds(controller.child.pid) };
    const rssBefore = { agent: rssMib(agent.child.pid), controller: rssMib(controller.child.pid) };
    for (let round = 1; round <= 3; round++) {
      await cluster.restartApiServer({ downMs: 3000 });
      assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 500 }), "timeout", `round ${round}: still enforced`);
      assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", `round ${round}: allowed still allowed`);
      assert.equal((await agent.get("/healthz")).status, 200);
    }
    await kubectlApply(policy(["192.0.2.10", "192.0.2.20"]));
    await enforcedFor("192.0.2.20", "connected");
    await enforcedFor("192.0.2.30", "timeout");
    await eventually("status of generation 2", status, (s) => s.status?.observedGeneration === 2 && (s.status.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false), 30_000);
    const after = { agent: fds(agent.child.pid), controller: fds(controller.child.pid) };
    assert.ok(after.agent <= before.agent + 8, `agent fds ${before.agent} -> ${after.agent}`);
    assert.ok(after.controller <= before.controller + 8, `controller fds ${before.controller} -> ${after.controller}`);
    // Memory: bounded, not growing per restart (a leak per reconnect would add up over three).
    const rssAfter = { agent: rssMib(agent.child.pid), controller: rssMib(controller.child.pid) };
    assert.ok(rssAfter.agent < rssBefore.agent + 40, `agent RSS ${rssBefore.agent.toFixed(0)} -> ${rssAfter.agent.toFixed(0)} MiB`);
    assert.ok(rssAfter.controller < rssBefore.controller + 40, `controller RSS ${rssBefore.controller.toFixed(0)} -> ${rssAfter.controller.toFixed(0)} MiB`);
    assert.equal(agent.child.exitCode, null, "the agent did not restart");
    assert.equal(controller.child.exitCode, null, "the controller did not restart");
  });

  it("sees a change that comes after a quiet period longer than client-node's 30 s watch timeout", async () => {
    await new Promise((r) => setTimeout(r, 35_000));
    const started = Date.now();
    await kubectlApply(policy(["192.0.2.10"]));
    await enforcedFor("192.0.2.20", "timeout", 10_000);
    assert.ok(Date.now() - started < 10_000);
  });
});
