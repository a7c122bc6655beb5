// Benchmark 5: convergence of a policy change over simulated nodes, and the agents' API writes
// when nothing changes. One real API server (test/kube/support/cluster.ts), 20 Node objects,
// one agent process per node (cluster mode, enforcing in a network namespace of its own) and
// the controller. One EgressPolicy selects every node; 50 changes alternately add and remove
// one /32 to its allow rule. Per change and node: the time from the API write returning to
// the node's kernel committing the new generation (seen by `nft monitor` in the node's
// namespace: see nftmonitor.ts), then to the node's NodeEgressReport showing it, then to the
// policy status counting every node. Then, with nothing changing, the write requests the API
// server serves for NodeEgressReports over 60 s, for the whole fleet.
import { join } from "node:path";
import { z } from "zod";
import { EgressPolicy } from "../src/api/policy.js";
import { eventually, startAgent, startController, type AgentProcess } from "../test/support/agent.js";
import { must } from "../test/support/exec.js";
import { startCluster } from "../test/kube/support/cluster.js";
import { Api, delta, GROUP_PATH, PolicyView, sumFor, timedPool, until, writeRequests } from "./kube.js";
import { cpuSeconds, log, median, netns, now, num, onExit, options, quantile, report, round, sleep, tempDir } from "./lib.js";
import { KernelMonitor } from "./nftmonitor.js";

const o = options();
const NODES = num(o, "nodes", 20, 2);
const CHANGES = num(o, "changes", 50, 3);
const IDLE_S = num(o, "idle-s", 60, 5);
/** Quiet time after the last change before the idle window opens. */
const SETTLE_S = num(o, "settle-s", 15, 2);
/** Pause between a change being fully rolled out (status current) and the next one. */
const GAP_MS = num(o, "gap-ms", 250, 100);
const CHANGE_TIMEOUT_MS = num(o, "change-timeout-s", 120, 60) * 1000;
const POLICY = "bench-convergence";
const BASE = ["192.0.2.10/32", "198.51.100.0/24"];
/** The /32 that change i (1-based) adds (odd i) or removes again (even i). */
const changed = (i: number) => `203.0.113.${10 + (((i - 1) >> 1) % 200)}`;

type PolicyInput = z.input<typeof EgressPolicy>;
function policy(extra: readonly string[]): PolicyInput {
  return {
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name: POLICY },
    spec: { nodeSelector: {}, mode: "Enforce", defaultAction: "Deny", rules: [{ name: "allow", action: "Allow", to: { cidrs: [...BASE, ...extra.map((a) => `${a}/32`)] }, ports: [{ protocol: "TCP", port: 443 }] }] },
  };
}
EgressPolicy.parse(policy([changed(1)]));

const ReportView = z.object({
  metadata: z.object({ name: z.string() }),
  status: z.object({ policies: z.array(z.object({ name: z.string(), generation: z.number(), result: z.string() })).default([]) }).optional(),
});

log(`convergence: ${NODES} nodes, ${CHANGES} changes, idle window ${IDLE_S} s`);
const tStart = now();
// The harness stops etcd and the API server on exit too (Ctrl-C, failure).
const cluster = await startCluster();
log(`API server up at ${cluster.server} (${((now() - tStart) / 1000).toFixed(1)} s)`);
const api = Api.of(cluster, 16);
const dir = tempDir("conv");
const names = Array.from({ length: NODES }, (_, i) => `sim-${String(i).padStart(2, "0")}`);

// Node objects, the policy (generation 1, before any agent: each applies it on start).
await timedPool(names, 8, (n) => api.create("/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: n, labels: { "nftegress.io/bench": "convergence" } } }));
const policyPath = `${GROUP_PATH}/egresspolicies/${POLICY}`;
await api.create(`${GROUP_PATH}/egresspolicies`, policy([]));

// What the API shows: per node, the first time its report carried generation G (Applied);
// the first time the policy status counted every node at G; every write seen, by time.
const reportAt = new Map<string, Map<number, number>>(names.map((n) => [n, new Map()]));
const statusAt = new Map<number, number>();
const reportWrites: number[] = [];
const statusWrites: number[] = [];
const lastGen = new Map<string, number>();
const reportWatch = await api.watch(`${GROUP_PATH}/nodeegressreports`, (type, raw, at) => {
  if (type === "DELETED") return;
  const r = ReportView.parse(raw);
  reportWrites.push(at);
  for (const p of r.status?.policies ?? []) {
    const seen = reportAt.get(r.metadata.name);
    if (p.name === POLICY && p.result === "Applied" && seen && !seen.has(p.generation)) seen.set(p.generation, at);
  }
});
const policyWatch = await api.watch(`${GROUP_PATH}/egresspolicies`, (type, raw, at) => {
  if (type === "DELETED") return;
  const p = PolicyView.parse(raw);
  // A write that leaves the generation as it was is a status write (only the controller makes those).
  if (type === "MODIFIED" && lastGen.get(p.metadata.name) === p.metadata.generation) statusWrites.push(at);
  lastGen.set(p.metadata.name, p.metadata.generation);
  const s = p.status;
  const g = s?.observedGeneration;
  if (g !== undefined && g === p.metadata.generation && s?.nodes && s.nodes.applied === NODES && s.nodes.selected === NODES && !statusAt.has(g)) statusAt.set(g, at);
});
onExit(() => {
  reportWatch.stop();
  policyWatch.stop();
});

// One namespace per node, its kernel watched from before the agent starts.
const monitors = new Map<string, KernelMonitor>();
for (const [i, n] of names.entries()) {
  const m = new KernelMonitor(netns(`cv${i}`), POLICY);
  onExit(() => m.stop());
  monitors.set(n, m);
}
await Promise.all([...monitors.values()].map((m) => m.ready()));

// The agents (production defaults: report interval 60 s, drift check every 5 s, commit-confirmed
// 10 s) and the controller.
const tAgents = now();
const agents = new Map<string, AgentProcess>();
await Promise.all(
  names.map(async (n) => {
    const m = monitors.get(n) as KernelMonitor;
    agents.set(n, await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", n, "--netns", m.ns, "--failsafe", "/dev/null", "--state-dir", join(dir, n)]));
  }),
);
const controller = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "bench", "--lease-duration", "15"]);
const failed = (what: string) => (e: Error) => {
  const logs = [...agents].map(([n, a]) => `--- ${n}\n${a.log().slice(-1500)}`).join("\n");
  throw new Error(`${what}: ${e.message}\n${logs}\n--- controller\n${controller.log().slice(-1500)}`);
};
await Promise.all([...agents.values()].map((a) => eventually("agent ready", () => a.get("/readyz"), (r) => r.status === 200, 180_000))).catch(failed("agents"));
const inKernel = (g: number) => names.every((n) => monitors.get(n)?.generations.has(g));
const reported = (g: number) => names.every((n) => reportAt.get(n)?.has(g));
const detail = (g: number) => () => `(kernel: ${names.filter((n) => monitors.get(n)?.generations.has(g)).length}/${NODES}, reports: ${names.filter((n) => reportAt.get(n)?.has(g)).length}/${NODES}, status: ${statusAt.has(g)})`;
await until("generation 1 enforced, reported and counted", () => inKernel(1) && reported(1) && statusAt.has(1), 180_000, 20).catch((e: Error) => failed("start")(new Error(`${e.message} ${detail(1)()}`)));
const startupMs = now() - tAgents;
log(`${NODES} agents enforcing and reported, status current, ${(startupMs / 1000).toFixed(1)} s after the agents started`);
await sleep(2000);

// The changes.
const convergence: number[][] = [];
const reportMs: number[][] = [];
const statusMs: number[] = [];
const writeMs: number[] = [];
let elementEvents = 0;
let generation = 1;
for (let i = 1; i <= CHANGES; i++) {
  const addr = changed(i);
  const adding = i % 2 === 1;
  const t0 = now();
  const res = await api.mergePatch(policyPath, { spec: policy(adding ? [addr] : []).spec });
  const tw = now();
  const g = res.metadata.generation ?? NaN;
  if (g !== generation + 1) throw new Error(`change ${i}: generation ${g} after ${generation}`);
  generation = g;
  writeMs.push(tw - t0);
  await until(`change ${i} in every kernel`, () => inKernel(g), CHANGE_TIMEOUT_MS, 5, detail(g)).catch(failed(`change ${i}`));
  await until(`change ${i} in every report and the status`, () => reported(g) && statusAt.has(g), CHANGE_TIMEOUT_MS, 5, detail(g)).catch(failed(`change ${i}`));
  const k = names.map((n) => (monitors.get(n)?.generations.get(g)?.at ?? NaN) - tw);
  convergence.push(k);
  reportMs.push(names.map((n) => (reportAt.get(n)?.get(g) ?? NaN) - tw));
  statusMs.push((statusAt.get(g) ?? NaN) - tw);
  elementEvents += names.filter((n) => monitors.get(n)?.elementChanged(g, adding ? "add" : "delete", addr)).length;
  // The table itself, on one node per change: the address is there after an add, gone after a removal.
  const probe = monitors.get(names[i % NODES] ?? "") as KernelMonitor;
  const table = must("ip", ["netns", "exec", probe.ns, "nft", "list", "table", "inet", "nftegress"]);
  if (table.includes(addr) !== adding) throw new Error(`change ${i}: ${addr} ${adding ? "missing from" : "still in"} the table of ${probe.ns}`);
  log(`change ${i}/${CHANGES} (${adding ? "add" : "remove"} ${addr}, generation ${g}): kernel median ${median(k).toFixed(0)} ms, max ${quantile(k, 1).toFixed(0)} ms; reports max ${quantile(reportMs[reportMs.length - 1] ?? [], 1).toFixed(0)} ms; status ${statusMs[statusMs.length - 1]?.toFixed(0)} ms`);
  await sleep(GAP_MS);
}

// Nothing changes: the writes the API server serves, from its own counters and from the watches.
log(`settling ${SETTLE_S} s, then counting writes for ${IDLE_S} s`);
await sleep(SETTLE_S * 1000);
const cpu0 = [...agents.values()].map((a) => cpuSeconds(a.child.pid ?? 0));
const m0 = writeRequests(await api.metrics());
const i0 = now();
await sleep(IDLE_S * 1000);
const m1 = writeRequests(await api.metrics());
const i1 = now();
const cpu1 = [...agents.values()].map((a) => cpuSeconds(a.child.pid ?? 0));
const idleMin = (i1 - i0) / 60_000;
const idle = delta(m0, m1);
const inWindow = (ts: readonly number[]) => ts.filter((t) => t >= i0 && t <= i1).length;
const agentCpu = cpu1.map((c, j) => ((c.withChildren - (cpu0[j]?.withChildren ?? NaN)) / ((i1 - i0) / 1000)) * 100);
log(`idle: ${JSON.stringify(idle)}`);

reportWatch.stop();
policyWatch.stop();
await Promise.all([...agents.values(), controller].map((a) => a.stop("SIGTERM")));
api.close();
await cluster.stop();

const all = convergence.flat();
const allReports = reportMs.flat();
report(
  o,
  "convergence",
  {
    convergence_p50_ms: round(quantile(all, 0.5), 1),
    convergence_p99_ms: round(quantile(all, 0.99), 1),
    convergence_max_ms: round(quantile(all, 1), 1),
    report_p50_ms: round(quantile(allReports, 0.5), 1),
    report_p99_ms: round(quantile(allReports, 0.99), 1),
    status_current_p50_ms: round(quantile(statusMs, 0.5), 1),
    status_current_p99_ms: round(quantile(statusMs, 0.99), 1),
    api_write_p50_ms: round(quantile(writeMs, 0.5), 1),
    agent_idle_writes_per_min: round(sumFor(idle, "nodeegressreports") / idleMin, 2),
    agent_idle_report_updates_per_min: round(inWindow(reportWrites) / idleMin, 2),
    controller_idle_status_writes_per_min: round(sumFor(idle, "egresspolicies", { subresource: "status" }) / idleMin, 2),
    agent_idle_cpu_percent: round(median(agentCpu), 2),
    startup_s: round(startupMs / 1000, 1),
  },
  {
    nodes: NODES,
    changes: CHANGES,
    samples_per_figure: all.length,
    idle_window_s: round((i1 - i0) / 1000, 1),
    settle_s: SETTLE_S,
    gap_ms: GAP_MS,
    enforced_means: "the first committed nftables batch in the node's namespace (nft monitor) whose output-chain jump rule carries the policy's new generation; the element diff is in the same transaction",
    element_events_seen: `${elementEvents} of ${all.length} node-changes showed the add/delete element of the changed /32 in that batch; every change was also checked in one node's table`,
    idle_writes_by_resource: idle,
    idle_writes_scope: "agent_idle_writes_per_min: write requests (any verb, any response) to nodeegressreports served by the API server over the window, the whole fleet of agents together, per minute",
    idle_status_writes_seen: inWindow(statusWrites),
    samples: { convergence_ms: convergence.map((r) => r.map((x) => round(x, 1))), report_ms: reportMs.map((r) => r.map((x) => round(x, 1))), status_current_ms: statusMs.map((x) => round(x, 1)), api_write_ms: writeMs.map((x) => round(x, 1)), agent_idle_cpu_percent: agentCpu.map((x) => round(x, 2)) },
  },
);
process.exit(0);
