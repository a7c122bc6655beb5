// Commit-confirm on a simulated node, against a real kube-apiserver: the agent runs inside the
// node's network namespace and reaches the API server only through a world address
// (203.0.113.77:6443, relayed to the test's kube-apiserver), so its own policy can cut it off.
// With --guard-api-server=false nothing in the guard keeps that address open: a change that
// denies it is rolled back on real packets and reported RolledBack; and an agent restarted on
// a node with a table restores that table (never deletes it) when its first change fails.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "node:net";
import yaml from "js-yaml";
import { z } from "zod";
import { ROOT, sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";
import { relayUnixToTcp } from "../support/relay.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const API = "203.0.113.77";
const Report = z.object({
  status: z.object({ policies: z.array(z.object({ name: z.string(), generation: z.number(), result: z.string(), message: z.string().optional() })) }),
});

const policy = (deny: string[]) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: cut}
spec:
  mode: Enforce
  defaultAction: Allow
  rules:
    - {name: blocked, action: Deny, to: {cidrs: [${deny.map((d) => `"${d}"`).join(", ")}]}}
`;

/** GET from inside a network namespace (the agent's metrics listen on its loopback). */
function nsGet(ns: string, port: number, path: string): Promise<string> {
  const script = `fetch("http://127.0.0.1:${port}${path}").then((r) => r.text()).then((t) => process.stdout.write(t), () => process.exit(1))`;
  return new Promise((resolve, reject) => execFile("nsenter", [`--net=/run/netns/${ns}`, process.execPath, "-e", script], (err, out) => (err ? reject(err) : resolve(out))));
}

function metric(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(" ").pop()) : NaN;
}

describe("commit-confirm on a simulated node", () => {
  let cluster: Cluster;
  let files: TempDir;
  let t: Topology;
  let hostRelay: Server;
  let worldRelay: ChildProcess;
  let kubeconfig: string;
  let agent: AgentProcess | undefined;

  const start = () =>
    startAgent(
      ["--kubeconfig", kubeconfig, "--node-name", "node-c", "--passwd", files.passwd, "--failsafe", "/dev/null", "--report-interval", "1", "--drift-interval", "2", "--state-dir", files.state, "--confirm-timeout", "4", "--guard-api-server=false"],
      ["nsenter", `--net=/run/netns/${t.node}`, "--"],
    );
  const blocked = (addr: string) => eventually(`${addr} blocked`, () => probeTcp(t, addr, 443, { timeoutMs: 500 }), (r) => r === "timeout", 20_000);
  const open = async (addr: string) => assert.equal(await probeTcp(t, addr, 443), "connected", `${addr} reachable`);
  async function report() {
    const r = await cluster.kubectl(["get", "nodeegressreport", "node-c", "-o", "json"]);
    if (r.code !== 0) throw new Error(r.stderr);
    return Report.parse(JSON.parse(r.stdout)).status.policies.find((p) => p.name === "cut");
  }
  const table = () => sh("nsenter", [`--net=/run/netns/${t.node}`, "nft", "list", "table", "inet", "nftegress"]);

  before(async () => {
    cluster = await startCluster();
    files = tempDir();
    t = await createTopology("c");
    const r = await cluster.kubectl(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: node-c}\n");
    assert.equal(r.code, 0, r.stderr);
    const sock = join(files.dir, "..", "api.sock");
    hostRelay = await relayUnixToTcp(sock, "127.0.0.1", Number(new URL(cluster.server).port));
    worldRelay = spawn("ip", ["netns", "exec", t.world, process.execPath, join(ROOT, "dist", "test", "support", "relay.js"), "--listen", `tcp:${API}:6443`, "--to", `unix:${sock}`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      worldRelay.stdout?.once("data", () => resolve());
      worldRelay.once("exit", (code) => reject(new Error(`relay exited ${code}`)));
    });
    // The admin kubeconfig, through the world address; the certificate names 127.0.0.1.
    const kc = yaml.load(readFileSync(cluster.kubeconfig, "utf8")) as { clusters: { cluster: Record<string, string> }[] };
    for (const c of kc.clusters) Object.assign(c.cluster, { server: `https://${API}:6443`, "tls-server-name": "127.0.0.1" });
    kubeconfig = join(files.dir, "..", "kubeconfig");
    writeFileSync(kubeconfig, yaml.dump(kc));
  });

  after(async () => {
    await agent?.stop("SIGTERM");
    worldRelay?.kill("SIGTERM");
    await new Promise((r) => (hostRelay ? hostRelay.close(r) : r(undefined)));
    await cluster?.stop();
    await t?.close();
    files?.remove();
  });

  it("the agent in the node's namespace works through the world address, with no guard entry for it", async () => {
    agent = await start();
    await eventually("report written", () => report().then(() => true), (x) => x, 30_000);
    let r = await cluster.kubectl(["apply", "-f", "-"], policy(["192.0.2.30"]));
    assert.equal(r.code, 0, r.stderr);
    await eventually("generation 1 applied", report, (p) => p?.generation === 1 && p.result === "Applied", 30_000);
    await blocked("192.0.2.30");
    await open("192.0.2.20");
    const guard = sh("nsenter", [`--net=/run/netns/${t.node}`, "nft", "list", "chain", "inet", "nftegress", "guard"]).stdout;
    assert.doesNotMatch(guard, /guard:api-server/, guard);
    assert.doesNotMatch(guard, new RegExp(API.replace(/\./g, "\\.")));
    r = await cluster.kubectl(["get", "node", "node-c"]);
    assert.equal(r.code, 0);
  });

  it("a change that denies the API server's address is rolled back on real packets and reported RolledBack", async () => {
    const r = await cluster.kubectl(["apply", "-f", "-"], policy(["192.0.2.30", "192.0.2.20", API]));
    assert.equal(r.code, 0, r.stderr);
    // Applied first: the world address is blocked for a moment...
    await eventually("the change applied", () => probeTcp(t, "192.0.2.20", 443, { timeoutMs: 300 }), (x) => x === "timeout", 15_000);
    // ...then rolled back within the 4 s deadline.
    const rolled = await eventually("reported RolledBack", report, (p) => p?.generation === 2 && p.result === "RolledBack", 30_000);
    assert.match(rolled?.message ?? "", /API server was unreachable within 4 s after applying this change; the previous ruleset was restored/);
    await open("192.0.2.20");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), "timeout", "the previous policy's deny is in place");
    // No static set of the change is left: outside the dynamic accounting sets, neither the
    // API server's address nor 192.0.2.20 appears.
    const statics = table().stdout.split(/\n(?=\tset |\tchain )/).filter((b) => !/flags dynamic/.test(b)).join("\n");
    assert.doesNotMatch(statics, new RegExp(`${API.replace(/\./g, "\\.")}|192\\.0\\.2\\.20`), statics);
    assert.match(statics, /192\.0\.2\.30/);
    // The dynamic accounting sets are kept by the rollback: they recorded the denied SYNs to the
    // API server while the change was in force.
    assert.match(table().stdout, new RegExp(`${API.replace(/\./g, "\\.")} \\. tcp \\. 6443 counter packets [1-9]`));
    const m = await nsGet(t.node, agent?.port ?? 0, "/metrics");
    assert.equal(metric(m, "nftegress_rollbacks_total"), 1);
  });

  it("an agent restarted on a node with a table restores that table when its first change fails confirm", async () => {
    await agent?.stop("SIGTERM");
    assert.equal(table().code, 0, "the table stays when the agent stops");
    agent = await start();
    // The new agent's first change is generation 2 again (its rollback memory is gone).
    const m = await eventually("the new agent rolled back", () => nsGet(t.node, agent?.port ?? 0, "/metrics"), (x) => metric(x, "nftegress_rollbacks_total") === 1, 40_000);
    assert.equal(metric(m, "nftegress_rollbacks_total"), 1);
    assert.equal(table().code, 0, "the table is there");
    assert.match(table().stdout, /192\.0\.2\.30/);
    await open("192.0.2.20");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), "timeout", "the previous agent's table enforces again");
    assert.match(agent.log(), /took the table found at start as the confirmed state/);
    assert.doesNotMatch(agent.log(), /cannot be rebuilt/);
    const p = await eventually("reported RolledBack", report, (x) => x?.generation === 2 && x.result === "RolledBack", 20_000);
    assert.ok(p);
  });
});
