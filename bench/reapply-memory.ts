// A focused memory measurement of the standalone agent (README's OOMKilled troubleshooting line
// and the chart's agent limit): in a memory cgroup at the chart's agent limit, as in its pod, the
// agent applies one policy of 100k destinations, then the policy is replaced several times by a
// different list of 56k destinations (every element changes: large element diffs).
// After each apply settles: RSS, peak RSS (VmHWM) over the process life, the cgroup's peak (the
// nft children included) and OOM kills. Prints one JSON object; writes no results file.
// --mode=Audit runs the same with the policy in Audit (default Enforce).
//   node dist/bench/reapply-memory.js [--size=100000] [--reapply-size=56000] [--reapplies=4] [--memory-limit=256Mi] [--mode=Audit]
import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { eventually, startAgent } from "../test/support/agent.js";
import { agentApplies, destinations, log, memoryLimitMeta, memoryLimitOption, memoryMiB, netns, num, onExit, options, policyFiles, round, sleep, stateDirArgs, tempDir, waitAgentIdle, writeFiles } from "./lib.js";

const o = options();
const size = num(o, "size", 100_000, 2000);
const reSize = num(o, "reapply-size", 56_000, 1000);
const reapplies = num(o, "reapplies", 4, 2);
const IDLE_TIMEOUT_MS = 1_800_000;
const mode = o.raw.get("mode") ?? "Enforce";
if (mode !== "Enforce" && mode !== "Audit") throw new Error("--mode must be Enforce or Audit");
/** The benchmarks' policy files, in the chosen mode. */
const files = (dests: ReturnType<typeof destinations>) => new Map([...policyFiles("big", dests)].map(([f, text]) => [f, text.replace("mode: Enforce", `mode: ${mode}`)]));

const dir = tempDir("rm");
const policies = join(dir, "policies");
writeFiles(policies, files(destinations(size)));
const ns = netns("rm");
const cgroup = memoryLimitOption(o, "agent");
const agent = await startAgent(["--standalone", "--policies", policies, "--netns", ns, "--failsafe", "/dev/null", ...stateDirArgs(dir)], cgroup?.launcher);
onExit(() => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
});
const pid = agent.child.pid ?? 0;
agent.child.once("exit", (code, signal) => {
  log(`agent exited (code ${code}, signal ${signal}); OOM kills ${cgroup?.stats().oomKills ?? 0}\n${agent.log().slice(-2000)}`);
  process.exit(1);
});

const rows: { phase: string; destinations: number; elements: number; rss_mib: number; peak_rss_mib: number; cgroup_peak_mib: number; oom_kills: number }[] = [];
let elements = NaN;
let applied = 0;
async function settle(phase: string, n: number): Promise<void> {
  await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200, IDLE_TIMEOUT_MS);
  // The new list is applied (the element count changes with every list) and the agent is idle.
  await eventually("new list applied", () => agentApplies(agent.port), (a) => a !== null && a.elements !== elements && a.count > applied, IDLE_TIMEOUT_MS);
  await waitAgentIdle(agent, 3000, IDLE_TIMEOUT_MS);
  const a = await agentApplies(agent.port);
  elements = a?.elements ?? NaN;
  applied = a?.count ?? 0;
  const last = agent.log().split("\n").filter((l) => l.includes('"ruleset applied"')).at(-1) ?? "";
  log(`last apply: ${last.slice(0, 300)}`);
  await sleep(5000);
  const m = memoryMiB(pid);
  const cg = cgroup?.stats();
  const row = { phase, destinations: n, elements, rss_mib: round(m.rss, 1), peak_rss_mib: round(m.peak, 1), cgroup_peak_mib: round(cg?.peakMiB ?? NaN, 1), oom_kills: cg?.oomKills ?? 0 };
  rows.push(row);
  log(JSON.stringify(row));
}

log(`reapply-memory: ${mode}, ${size} destinations, then ${reapplies} x ${reSize} (each a different list), limit ${cgroup?.limitMiB ?? "none"} MiB`);
await settle("first apply", size);
for (let i = 0; i < reapplies; i++) {
  // The new list replaces every file of the policy (different seeds: every element changes).
  for (const f of readdirSync(policies)) rmSync(join(policies, f));
  writeFiles(policies, files(destinations(reSize, 100 + i)));
  await settle(`re-apply ${i + 1}`, reSize);
}
process.stdout.write(`${JSON.stringify({ rows, max_peak_rss_mib: Math.max(...rows.map((r) => r.peak_rss_mib)), max_cgroup_peak_mib: Math.max(...rows.map((r) => r.cgroup_peak_mib)), mode, memory_limit: memoryLimitMeta(cgroup) })}\n`);
agent.child.removeAllListeners("exit");
await agent.stop("SIGKILL");
process.exit(0);
