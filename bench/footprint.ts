// Benchmark 6 (standalone part): the agent's footprint with 10 policies / 100k destinations in
// total (each policy an Allow rule over its own 10k-entry address set), enforcing in a network
// namespace of its own. Idle: after it applied and settled, CPU over a window (its own and its
// nft children's) and resident memory from /proc. Busy: the same with a one-CIDR change every
// second. API writes per minute need the Kubernetes agent and are not measured here. The agent
// runs in a memory cgroup at the chart's agent limit (--memory-limit), as in its pod: Node.js
// sizes its heap from the limit, and the nft processes it runs count against it too.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, startAgent } from "../test/support/agent.js";
import {
  CHANGE_ADDR,
  CHUNK,
  agentApplies,
  chunkFile,
  chunkYaml,
  cpuSeconds,
  inspectAfterGc,
  destText,
  destinations,
  log,
  memoryLimitMeta,
  memoryLimitOption,
  memoryMiB,
  netns,
  now,
  num,
  onExit,
  options,
  policyFiles,
  report,
  round,
  sleep,
  stateDirArgs,
  tempDir,
  waitAgentIdle,
  withInspectablePort,
  writeFiles,
} from "./lib.js";

const o = options();
const size = num(o, "size", 100_000, 1000);
const policyCount = num(o, "policies", 10, 10);
const settleMs = num(o, "settle-s", 15, 1) * 1000;
const windowMs = num(o, "window-s", 30, 2) * 1000;
const IDLE_TIMEOUT_MS = num(o, "idle-timeout-s", 900, 60) * 1000;

const dir = tempDir("fp");
const policies = join(dir, "policies");
const dests = destinations(size);
const per = Math.ceil(dests.length / policyCount);
const name = (i: number) => `bench${String(i).padStart(2, "0")}`;
for (let i = 0; i < policyCount; i++) writeFiles(policies, policyFiles(name(i), dests.slice(i * per, (i + 1) * per)));
// The busy phase toggles one CIDR in the last chunk of the first policy's set.
const first = dests.slice(0, per).map(destText);
const lastChunk = Math.max(1, Math.ceil(first.length / CHUNK)) - 1;
function toggle(on: boolean): void {
  const tmp = join(dir, "chunk.tmp");
  writeFileSync(tmp, chunkYaml(name(0), lastChunk, first.slice(lastChunk * CHUNK), on ? [CHANGE_ADDR] : []));
  renameSync(tmp, join(policies, chunkFile(name(0), lastChunk)));
}

log(`footprint: ${policyCount} policies, ${size} destinations, settle ${settleMs / 1000} s, windows ${windowMs / 1000} s`);
const ns = netns("fp");
const cgroup = memoryLimitOption(o, "agent");
const agent = await withInspectablePort(() => startAgent(["--standalone", "--policies", policies, "--netns", ns, "--failsafe", "/dev/null", ...stateDirArgs(dir)], cgroup?.launcher));
/** The agent dying before the end (an OOM kill at its limit) fails the benchmark at once. */
const died = (code: number | null, signal: NodeJS.Signals | null) => {
  const oom = cgroup && cgroup.stats().oomKills > 0 ? `: OOM-killed at its ${cgroup.limitMiB} MiB limit` : "";
  log(`agent exited (code ${code}, signal ${signal})${oom}\n${agent.log().slice(-2000)}`);
  process.exit(1);
};
agent.child.once("exit", died);
onExit(() => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
});
const pid = agent.child.pid;
if (pid === undefined) throw new Error("agent did not start");
const t0 = now();
await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200, IDLE_TIMEOUT_MS).catch((e: Error) => {
  throw new Error(`${e.message}\nagent log:\n${agent.log().slice(-3000)}`);
});
const readyMs = now() - t0;
const idleAt = await waitAgentIdle(agent, 2000, IDLE_TIMEOUT_MS);
const startupBusyMs = idleAt - t0;
log(`agent ready after ${readyMs.toFixed(0)} ms, idle ${startupBusyMs.toFixed(0)} ms after start`);
await sleep(settleMs);

/** CPU % of one core over the window and the largest RSS seen (sampled every second). */
async function sample(ms: number, during?: (i: number) => void): Promise<{ cpu: number; cpuSelf: number; rssMax: number; rssEnd: number }> {
  const c0 = cpuSeconds(pid ?? 0);
  const start = now();
  let rssMax = 0;
  for (let i = 0; now() - start < ms; i++) {
    during?.(i);
    rssMax = Math.max(rssMax, memoryMiB(pid ?? 0).rss);
    await sleep(Math.max(0, start + (i + 1) * 1000 - now()));
  }
  const c1 = cpuSeconds(pid ?? 0);
  const secs = (now() - start) / 1000;
  return { cpu: ((c1.withChildren - c0.withChildren) / secs) * 100, cpuSelf: ((c1.self - c0.self) / secs) * 100, rssMax, rssEnd: memoryMiB(pid ?? 0).rss };
}

const idle = await sample(windowMs);
const before = await agentApplies(agent.port);
const idleWrites = before?.count;
log(`idle: ${idle.cpu.toFixed(2)} % CPU (self ${idle.cpuSelf.toFixed(2)} %), RSS ${idle.rssEnd.toFixed(1)} MiB (max ${idle.rssMax.toFixed(1)})`);
const busy = await sample(windowMs, (i) => toggle(i % 2 === 0));
toggle(false);
const after = await agentApplies(agent.port);
const applies = before && after ? after.count - before.count : NaN;
const peak = memoryMiB(pid).peak;
log(`change every second: ${busy.cpu.toFixed(1)} % CPU (self ${busy.cpuSelf.toFixed(1)} %), RSS max ${busy.rssMax.toFixed(1)} MiB, ${applies} applies completed; peak RSS ${peak.toFixed(1)} MiB`);
// Last (the inspector it opens costs memory too): what is live once garbage is collected.
await waitAgentIdle(agent, 2000, IDLE_TIMEOUT_MS);
const gc = await inspectAfterGc(agent);
log(`after a forced full GC: RSS ${gc.rss.toFixed(1)} MiB, V8 heap in use ${gc.heapUsed.toFixed(1)} MiB`);
agent.child.off("exit", died);
const cg = cgroup?.stats();
await agent.stop("SIGKILL");

report(
  o,
  "footprint",
  {
    agent_idle_rss_mib: round(idle.rssEnd, 1),
    agent_idle_cpu_percent: round(idle.cpu, 2),
    agent_idle_cpu_self_percent: round(idle.cpuSelf, 2),
    agent_busy_cpu_percent: round(busy.cpu, 1),
    agent_busy_rss_mib: round(busy.rssMax, 1),
    agent_busy_applies_per_min: round((applies / (windowMs / 1000)) * 60, 1),
    agent_peak_rss_mib: round(peak, 1),
    agent_rss_after_gc_mib: round(gc.rss, 1),
    agent_heap_used_after_gc_mib: round(gc.heapUsed, 1),
    agent_ready_ms: round(readyMs, 0),
    agent_busy_after_start_ms: round(startupBusyMs, 0),
    agent_memory_limit_mib: cgroup?.limitMiB ?? 0,
    agent_cgroup_peak_mib: round(cg?.peakMiB ?? NaN, 1),
    agent_oom_kills: cg?.oomKills ?? 0,
    ruleset_elements: after?.elements ?? before?.elements ?? NaN,
  },
  { policies: policyCount, destinations: size, settle_s: settleMs / 1000, window_s: windowMs / 1000, applies_before_idle_window: idleWrites, cpu_percent: "of one core; with children = agent + the nft processes it ran", memory_limit: memoryLimitMeta(cgroup) },
);
process.exit(0);
