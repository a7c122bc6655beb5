// Benchmark 6: the controller (a real `nftegress controller` process) aggregating 5,000 node
// reports x 50 policies on one real API server (test/kube/support/cluster.ts). No agents: the
// benchmark writes 5,000 Node objects, 50 EgressPolicies selecting every node, and 5,000
// NodeEgressReports listing all 50 policies (applied generation, counters, two top denied
// destinations each) straight to the API server, 32 requests in flight, by server-side apply
// as agents do. Then a burst: every policy gets a new generation, and every report then says
// it applied it. Measured: from the end of the burst until every policy's status is current
// (observedGeneration = generation, every node applied, none pending); the controller's status
// writes per minute during and after the burst (a watch on the policies, cross-checked with the
// API server's apiserver_request_total); its RSS from /proc at the end. The writer's own time
// is reported separately.
import { z } from "zod";
import { EgressPolicy } from "../src/api/policy.js";
import { NodeEgressReport } from "../src/api/report.js";
import { startController } from "../test/support/agent.js";
import { startCluster } from "../test/kube/support/cluster.js";
import { Api, clusterPids, cpuPercent, cpuSnapshot, delta, GROUP_PATH, PolicyView, sumFor, timedPool, type WriterFigures, until, writeRequests } from "./kube.js";
import { cpuSeconds, inspectAfterGc, log, memoryLimitMeta, memoryLimitOption, memoryMiB, now, num, onExit, options, report, rng, round, sleep, withInspectablePort, withNodeOptions } from "./lib.js";

const o = options();
const REPORTS = num(o, "reports", 5000, 20);
const POLICIES = num(o, "policies", 50, 3);
const INFLIGHT = num(o, "inflight", 32, 8);
/** Quiet window after the statuses are current again, for the writes-when-idle figure. */
const AFTER_S = num(o, "after-s", 60, 3);
const TIMEOUT_MS = num(o, "timeout-s", 900, 60) * 1000;
/** The statuses count as settled when no status write was seen for this long. */
const QUIET_MS = num(o, "quiet-s", 5, 1) * 1000;
/** --cpu-prof=DIR: the controller writes a V8 CPU profile there when it stops. */
const CPU_PROF = o.raw.get("cpu-prof");
/** --workers=N: the controller's --workers (default: its own default). */
const WORKERS = o.raw.get("workers");
/** --controller-node-options=FLAGS: extra NODE_OPTIONS for the controller, e.g. a heap cap. */
const CONTROLLER_NODE_OPTIONS = [o.raw.get("controller-node-options") ?? "", CPU_PROF ? `--cpu-prof --cpu-prof-dir=${CPU_PROF}` : ""].join(" ").trim();

const pad = (i: number, w: number) => String(i).padStart(w, "0");
const nodeNames = Array.from({ length: REPORTS }, (_, i) => `sim-${pad(i, 5)}`);
const policyNames = Array.from({ length: POLICIES }, (_, i) => `bench-p${pad(i, 3)}`);

function policy(name: string, cidr: string): z.input<typeof EgressPolicy> {
  return {
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name },
    spec: { nodeSelector: {}, mode: "Enforce", defaultAction: "Deny", rules: [{ name: "web", action: "Allow", to: { cidrs: [cidr] }, ports: [{ protocol: "TCP", port: 443 }] }] },
  };
}

/** Nodes that denied something (their entries carry counters and two top denied
 *  destinations each); the others report zero counters and empty lists, as an agent does. */
const DENYING_EVERY = num(o, "denying-every", 10, 10);

/** What node `i`'s agent would report after applying `generation` of every policy. */
function nodeReport(i: number, uid: string, generation: number): z.input<typeof NodeEgressReport> {
  const name = nodeNames[i] ?? "";
  const r = rng(i * 7919 + generation);
  const denying = i % DENYING_EVERY === 0;
  return {
    apiVersion: "nftegress.io/v1alpha1",
    kind: "NodeEgressReport",
    metadata: { name, ownerReferences: [{ apiVersion: "v1", kind: "Node", name, uid }] },
    status: {
      rulesetHash: `${pad(i, 8)}${pad(generation, 8)}`,
      lastApplyTime: new Date(Date.UTC(2026, 10, 26, 0, generation)).toISOString().replace(/\.\d+Z$/, "Z"),
      policies: policyNames.map((p) => {
        const packets = denying ? (1 + Math.floor(r() * 1000)) * generation : 0;
        return {
          name: p,
          generation,
          mode: "Enforce" as const,
          result: "Applied" as const,
          denied: { packets, bytes: packets * 60 },
          wouldDeny: { packets: 0, bytes: 0 },
          topDeniedDestinations: denying ? [0, 1].map((k) => ({ address: `203.0.113.${1 + Math.floor(r() * 16)}`, port: 443, protocol: "tcp", packets: Math.floor(packets / (2 + k)) })) : [],
          deniedByUser: [],
        };
      }),
    },
  };
}
NodeEgressReport.parse(nodeReport(0, "uid", 1));
EgressPolicy.parse(policy("x", "192.0.2.10/32"));

type Snap = ReturnType<typeof cpuSnapshot>;


log(`control-plane: ${REPORTS} reports x ${POLICIES} policies, ${INFLIGHT} writes in flight`);
const tStart = now();
const cluster = await startCluster();
log(`API server up at ${cluster.server} (${((now() - tStart) / 1000).toFixed(1)} s)`);
const api = Api.of(cluster, INFLIGHT);
const pids = clusterPids(cluster.dir);
const cpu: Record<string, ReturnType<typeof cpuSnapshot>> = {};
const mark = (phase: string) => (cpu[phase] = cpuSnapshot(pids));

// Per policy: its generation, whether its status is current, and every status write seen.
const currentAt = new Map<string, { generation: number; at: number }>();
const lastGeneration = new Map<string, number>();
const statusWrites: number[] = [];
const policyWatch = await api.watch(`${GROUP_PATH}/egresspolicies`, (type, raw, at) => {
  if (type === "DELETED") return;
  const p = PolicyView.parse(raw);
  const name = p.metadata.name;
  const g = p.metadata.generation;
  // Only the controller writes the status subresource, and that leaves the generation alone.
  if (type === "MODIFIED" && lastGeneration.get(name) === g) statusWrites.push(at);
  lastGeneration.set(name, g);
  const s = p.status;
  const current = s?.observedGeneration === g && s.nodes?.selected === REPORTS && s.nodes.applied === REPORTS && s.nodes.pending === 0;
  if (current && currentAt.get(name)?.generation !== g) currentAt.set(name, { generation: g, at });
});
onExit(() => policyWatch.stop());
// When a plain watcher (this benchmark) sees each report generation: how fast the API server
// delivers the burst to watchers, whatever the controller makes of it.
const ReportGeneration = z.object({ status: z.object({ policies: z.array(z.object({ generation: z.number() })) }).optional() });
/** Generation -> when the last report carrying it was seen. */
const reportSeen = new Map<number, number>();
const reportWatch = await api.watch(`${GROUP_PATH}/nodeegressreports`, (type, raw, at) => {
  const g = ReportGeneration.parse(raw).status?.policies[0]?.generation;
  if (type !== "DELETED" && g !== undefined) reportSeen.set(g, at);
});
onExit(() => reportWatch.stop());
const allCurrent = (g: number) => policyNames.every((p) => currentAt.get(p)?.generation === g);
const lastCurrent = (g: number) => Math.max(...policyNames.map((p) => (currentAt.get(p)?.generation === g ? (currentAt.get(p)?.at ?? NaN) : NaN)));
const progress = (g: number) => () => `(${policyNames.filter((p) => currentAt.get(p)?.generation === g).length}/${POLICIES} policies current)`;

// Setup: nodes, policies, reports at generation 1.
const uids: string[] = new Array<string>(REPORTS).fill("");
const nodesWrite = await timedPool(nodeNames, INFLIGHT, async (n, i) => {
  uids[i] = (await api.create("/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: n, labels: { "nftegress.io/bench": "control-plane" } } })).metadata.uid ?? "";
});
log(`${REPORTS} nodes created in ${nodesWrite.wall_s} s (${nodesWrite.per_s}/s)`);
await timedPool(policyNames, INFLIGHT, (p) => api.create(`${GROUP_PATH}/egresspolicies`, policy(p, "192.0.2.10/32")));
const writeReports = (generation: number): Promise<WriterFigures> =>
  timedPool(nodeNames, INFLIGHT, (n, i) => api.apply(`${GROUP_PATH}/nodeegressreports/${n}`, nodeReport(i, uids[i] ?? "", generation), "nftegress-agent"));
// Created plainly (cheaper for the API server than an apply); the burst applies, as agents do.
mark("reports_start");
const initialWrite = await timedPool(nodeNames, INFLIGHT, (_, i) => api.create(`${GROUP_PATH}/nodeegressreports`, nodeReport(i, uids[i] ?? "", 1)));
log(`${REPORTS} reports written in ${initialWrite.wall_s} s (${initialWrite.per_s}/s, p99 ${initialWrite.latency_p99_ms} ms)`);

// The controller starts on a full API server: its first lists carry every report.
mark("controller_start");
const tController = now();
const controllerArgs = ["--kubeconfig", cluster.kubeconfig, "--identity", "bench", "--lease-duration", "15", ...(WORKERS ? ["--workers", WORKERS] : [])];
/** --memory-limit=QTY: the controller runs in a memory cgroup with this hard limit, as in its
 *  pod; default the chart's controller.resources.limits.memory; 0 for none. */
const cgroup = memoryLimitOption(o, "controller");
const controller = await withInspectablePort(() => withNodeOptions(CONTROLLER_NODE_OPTIONS, () => startController(controllerArgs, cgroup?.launcher)));
pids["controller"] = controller.child.pid ?? 0;
(cpu["controller_start"] as Snap).cpu["controller"] = 0; // a new process
const pid = controller.child.pid ?? 0;
const failed = (what: string) => (e: Error) => {
  const oom = cgroup && cgroup.stats().oomKills > 0 ? ` (the controller was OOM-killed at its ${cgroup.limitMiB} MiB limit)` : "";
  throw new Error(`${what}${oom}: ${e.message}\n--- controller\n${controller.log().slice(-3000)}`);
};
/** Waits fail at once when the controller has died (an OOM kill at its limit, a crash). */
const alive = (cond: () => boolean) => () => {
  if (controller.child.exitCode !== null || controller.child.signalCode !== null) throw new Error(`the controller exited (code ${controller.child.exitCode}, signal ${controller.child.signalCode})`);
  return cond();
};
await until("initial statuses current", alive(() => allCurrent(1)), TIMEOUT_MS, 20, progress(1)).catch(failed("start"));
const initialS = (lastCurrent(1) - tController) / 1000;
mark("controller_current");
log(`all ${POLICIES} statuses current ${initialS.toFixed(1)} s after the controller started`);
await until("statuses settled", alive(() => now() - (statusWrites[statusWrites.length - 1] ?? 0) > QUIET_MS), TIMEOUT_MS, 100).catch(failed("settle"));
const rssBefore = memoryMiB(pid);
const tRss = now();

// The controller's RSS once a second from here to the end: how it grows and settles.
const rssSeries: [number, number][] = [];
const rssTimer = setInterval(() => rssSeries.push([round((now() - tRss) / 1000, 1), round(memoryMiB(pid).rss, 1)]), 1000);
onExit(() => clearInterval(rssTimer));

// The burst: every policy bumped, then every report at the new generation.
const cpu0 = cpuSeconds(pid);
const m0 = writeRequests(await api.metrics());
mark("burst_start");
const b0 = now();
const bumpWrite = await timedPool(policyNames, INFLIGHT, async (p) => {
  const r = await api.mergePatch(`${GROUP_PATH}/egresspolicies/${p}`, { spec: policy(p, "192.0.2.11/32").spec });
  if (r.metadata.generation !== 2) throw new Error(`${p}: generation ${r.metadata.generation} after the bump`);
});
const burstWrite = await writeReports(2);
const b1 = now();
mark("burst_end");
const rssAtBurstEnd = memoryMiB(pid).rss;
log(`burst: ${POLICIES} policies bumped in ${bumpWrite.wall_s} s, ${REPORTS} reports written in ${burstWrite.wall_s} s (${burstWrite.per_s}/s, p99 ${burstWrite.latency_p99_ms} ms)`);
await until("statuses current after the burst", alive(() => allCurrent(2)), TIMEOUT_MS, 20, progress(2)).catch(failed("burst"));
const c = lastCurrent(2);
mark("burst_current");
const mCurrent = writeRequests(await api.metrics());
const cpu1 = cpuSeconds(pid);
log(`all statuses current ${((c - b1) / 1000).toFixed(2)} s after the burst's last write; counting writes for ${AFTER_S} s`);
await sleep(AFTER_S * 1000);
const a1 = now();
mark("end");
const mAfter = writeRequests(await api.metrics());
const rss = memoryMiB(pid);
clearInterval(rssTimer);
const cg = cgroup?.stats();
const metrics = (await controller.get("/metrics")).text;
// What of it is live: a full garbage collection through the inspector, then RSS and heap in use.
const gc = await inspectAfterGc(controller);

policyWatch.stop();
reportWatch.stop();
await controller.stop("SIGTERM");
api.close();
await cluster.stop();

const during = delta(m0, mCurrent);
const after = delta(mCurrent, mAfter);
const inRange = (from: number, to: number) => statusWrites.filter((t) => t > from && t <= to);
/** The most status writes seen in any 60 s window from the burst's start to the end. */
function maxPerMinute(ts: readonly number[]): number {
  const s = [...ts].sort((a, b) => a - b);
  let best = 0;
  for (let i = 0, j = 0; j < s.length; j++) {
    while ((s[j] ?? 0) - (s[i] ?? 0) > 60_000) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}
const burstWrites = inRange(b0, c);
const afterWrites = inRange(c, a1);
const metricSum = (name: string, label = "") =>
  metrics
    .split("\n")
    .filter((l) => l.startsWith(name) && l.includes(label))
    .reduce((a, l) => a + Number(l.split(" ").pop()), 0);
const reconciles = metricSum("nftegress_controller_reconcile_duration_seconds_count");

report(
  o,
  "control-plane",
  {
    status_current_s: round((c - b1) / 1000, 2),
    controller_writes_per_min: maxPerMinute(inRange(b0, a1)),
    controller_writes_burst: burstWrites.length,
    controller_writes_after_per_min: round((afterWrites.length / ((a1 - c) / 1000)) * 60, 2),
    controller_rss_mib: round(rss.rss, 1),
    controller_peak_rss_mib: round(rss.peak, 1),
    controller_rss_before_burst_mib: round(rssBefore.rss, 1),
    controller_rss_max_from_burst_mib: round(Math.max(...rssSeries.map(([, v]) => v)), 1),
    controller_rss_at_burst_end_mib: round(rssAtBurstEnd, 1),
    controller_rss_after_gc_mib: round(gc.rss, 1),
    controller_heap_used_after_gc_mib: round(gc.heapUsed, 1),
    controller_memory_limit_mib: cgroup?.limitMiB ?? 0,
    controller_cgroup_peak_mib: round(cg?.peakMiB ?? NaN, 1),
    controller_oom_kills: cg?.oomKills ?? 0,
    controller_burst_cpu_s: round(cpu1.self - cpu0.self, 2),
    initial_status_current_s: round(initialS, 2),
    burst_write_s: round((b1 - b0) / 1000, 2),
    writer_reports_per_s: burstWrite.per_s,
    reconciles_total: reconciles,
    reconcile_mean_ms: round((metricSum("nftegress_controller_reconcile_duration_seconds_sum") / reconciles) * 1000, 1),
  },
  {
    reports: REPORTS,
    policies: POLICIES,
    report_bytes: JSON.stringify(nodeReport(1, "00000000-0000-0000-0000-000000000000", 2)).length,
    report_bytes_denying: JSON.stringify(nodeReport(0, "00000000-0000-0000-0000-000000000000", 2)).length,
    report_content: `every report lists all ${POLICIES} policies (generation, result Applied, counters); every ${DENYING_EVERY}th node denied traffic: non-zero counters and two top denied destinations per policy, the others zero counters and empty lists`,
    inflight: INFLIGHT,
    controller_workers: WORKERS ?? "default",
    controller_node_options: CONTROLLER_NODE_OPTIONS,
    controller_memory_limit: memoryLimitMeta(cgroup),
    after_window_s: AFTER_S,
    status_current_means: "every policy's status has observedGeneration = metadata.generation and nodes.selected = nodes.applied = the report count, nodes.pending = 0 (seen on a watch of the policies); timed from the burst's last report write returning",
    controller_writes_per_min_means: "the most status writes (watch events that leave the generation unchanged) in any 60 s window from the burst's start to the end of the after-window",
    writer: { nodes: nodesWrite, initial_reports: initialWrite, bump: bumpWrite, burst_reports: burstWrite, retries: Object.fromEntries(api.retries) },
    api_writes_during_burst: during,
    api_writes_after: after,
    controller_status_writes_apiserver: { during: sumFor(during, "egresspolicies", { subresource: "status" }), after: sumFor(after, "egresspolicies", { subresource: "status" }) },
    last_report_seen_by_a_watcher_s_after_burst_end: round(((reportSeen.get(2) ?? NaN) - b1) / 1000, 2),
    cpu_percent_of_one_core: {
      initial_reports: cpuPercent(cpu["reports_start"] as Snap, cpu["controller_start"] as Snap),
      controller_start_until_current: cpuPercent(cpu["controller_start"] as Snap, cpu["controller_current"] as Snap),
      burst: cpuPercent(cpu["burst_start"] as Snap, cpu["burst_end"] as Snap),
      burst_end_until_current: cpuPercent(cpu["burst_end"] as Snap, cpu["burst_current"] as Snap),
      after: cpuPercent(cpu["burst_current"] as Snap, cpu["end"] as Snap),
    },
    controller_reconciles: { written: metricSum("nftegress_controller_reconcile_total", 'result="written"'), unchanged: metricSum("nftegress_controller_reconcile_total", 'result="unchanged"'), error: metricSum("nftegress_controller_reconcile_total", 'result="error"') },
    samples: {
      status_writes_s_after_burst_start: burstWrites.map((t) => round((t - b0) / 1000, 3)),
      controller_rss_mib_by_s_from_burst_start: rssSeries,
      policy_current_s_after_burst_end: policyNames.map((p) => round(((currentAt.get(p)?.at ?? NaN) - b1) / 1000, 3)),
    },
  },
);
process.exit(0);
