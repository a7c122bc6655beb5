// Benchmark 3: one CIDR added to and removed from a 100k-CIDR policy, from the file write to
// the moment the kernel enforces it. The standalone agent watches the policy directory and
// enforces in the node namespace of a node/world pair; a prober inside the node sends one UDP
// datagram from a fresh socket (a new flow, so the sets are consulted) every millisecond until
// the verdict flips (allowed: sent; denied: EPERM from the output drop). Files are replaced the
// way editors and config management do (write a temp file, rename it into place).
// Compared, interleaved, with raw nft 1.0.6 adding / deleting one element of the equivalent
// 100k interval set in a namespace of its own.
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, startAgent } from "../test/support/agent.js";
import { createTopology } from "../test/support/netns.js";
import {
  CHANGE_ADDR,
  IPERF_PORT,
  RAW_TABLE,
  chunkFile,
  chunkTexts,
  chunkYaml,
  destinations,
  log,
  median,
  netns,
  nftSync,
  now,
  num,
  onExit,
  options,
  policyFiles,
  quantile,
  rawScript,
  report,
  round,
  startProber,
  stateDirArgs,
  tempDir,
  timeChange,
  timed,
  waitAgentIdle,
  writeFiles,
  changeOptions,
} from "./lib.js";

const o = options();
const { size, reps, QUIET_MS, IDLE_TIMEOUT_MS, BUDGET_MS } = changeOptions(o);

const dir = tempDir("inc");
const policies = join(dir, "policies");
const dests = destinations(size);
writeFiles(policies, policyFiles("bench", dests));
const chunks = chunkTexts(dests);
const lastChunk = chunks.length - 1;
const lastChunkCidrs = chunks[lastChunk] ?? [];
/** Replaces the last chunk file atomically, with or without the extra CIDR. */
function writeLastChunk(withChange: boolean): void {
  const tmp = join(dir, "chunk.tmp");
  writeFileSync(tmp, chunkYaml("bench", lastChunk, lastChunkCidrs, withChange ? [CHANGE_ADDR] : []));
  renameSync(tmp, join(policies, chunkFile("bench", lastChunk)));
}

log(`incremental: ${size} destinations, ${reps} repetitions`);
const topo = await createTopology("binc");
onExit(() => void topo.close());
// Agent state (what the ruleset allows, for revocation after restarts) goes to our temp dir,
// not the host's default, when this build has the option.
const agent = await startAgent(["--standalone", "--policies", policies, "--netns", topo.node, "--failsafe", "/dev/null", ...stateDirArgs(dir)]);
onExit(() => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
});
const t0 = now();
await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200, 300_000).catch((e: Error) => {
  throw new Error(`${e.message}\nagent log:\n${agent.log().slice(-3000)}`);
});
const firstApplyMs = now() - t0;
log(`agent applied ${size} destinations in ${firstApplyMs.toFixed(0)} ms (start to ready)`);

// Busy after ready: until its last apply before a quiet window (not counting the window).
const idleStart = now();
const startupBusyMs = (await waitAgentIdle(agent, QUIET_MS, IDLE_TIMEOUT_MS)) - idleStart;
log(`agent idle ${startupBusyMs.toFixed(0)} ms after ready`);

// The prober, inside the node namespace.
const prober = await startProber(topo.node, () => `agent log:\n${agent.log()}`);
const setup = { prober, agent, addr: CHANGE_ADDR, port: IPERF_PORT, quietMs: QUIET_MS, timeoutMs: IDLE_TIMEOUT_MS };

/** File write to enforced; file write to the agent idle again; the agent's own apply time. */
async function change(withChange: boolean): Promise<{ ms: number; settleMs: number; agentMs: number }> {
  const c = await timeChange(setup, withChange, () => writeLastChunk(withChange));
  return { ms: c.enforced - c.start, settleMs: c.idleAt - c.start, agentMs: c.agentMs };
}

// Raw nft: the same list as one interval set, in a namespace of its own (nft 1.0.6 downloads
// every interval set of a namespace before an element change, so it must not share ours).
const rawNs = netns("incraw");
const rawDir = tempDir("incraw");
writeFileSync(join(rawDir, "raw.nft"), rawScript(dests));
nftSync(rawNs, `include "${join(rawDir, "raw.nft")}"\n`);
const rawElement = (verb: "add" | "delete") => timed(["nsenter", `--net=/run/netns/${rawNs}`, "--", "nft", `${verb} element inet ${RAW_TABLE} allowed { ${CHANGE_ADDR} }`]);

const add: number[] = [];
const del: number[] = [];
const agentAdd: number[] = [];
const agentDel: number[] = [];
const rawAdd: number[] = [];
const rawDel: number[] = [];
const settle: number[] = [];
for (let r = 0; r < reps; r++) {
  if (r > 0 && now() - t0 > BUDGET_MS) {
    log(`time budget of ${BUDGET_MS / 1000} s used up: stopping after ${r} repetitions`);
    break;
  }
  const a = await change(true);
  add.push(a.ms);
  agentAdd.push(a.agentMs);
  settle.push(a.settleMs);
  rawAdd.push(await rawElement("add"));
  const d = await change(false);
  del.push(d.ms);
  agentDel.push(d.agentMs);
  settle.push(d.settleMs);
  rawDel.push(await rawElement("delete"));
  log(`rep ${r + 1}/${reps}: add ${a.ms.toFixed(1)} ms (agent apply ${a.agentMs.toFixed(1)}, idle after ${a.settleMs.toFixed(0)}), delete ${d.ms.toFixed(1)} ms (agent apply ${d.agentMs.toFixed(1)}, idle after ${d.settleMs.toFixed(0)}); raw interval add ${rawAdd[r]?.toFixed(1)} ms, delete ${rawDel[r]?.toFixed(1)} ms`);
}
await agent.stop("SIGTERM");

report(
  o,
  "incremental",
  {
    incremental_add_ms: round(median(add), 1),
    incremental_delete_ms: round(median(del), 1),
    raw_interval_add_ms: round(median(rawAdd), 1),
    raw_interval_delete_ms: round(median(rawDel), 1),
    incremental_add_max_ms: round(quantile(add, 1), 1),
    incremental_delete_max_ms: round(quantile(del, 1), 1),
    agent_apply_add_ms: round(median(agentAdd), 1),
    agent_apply_delete_ms: round(median(agentDel), 1),
    agent_first_apply_ms: round(firstApplyMs, 0),
    agent_busy_after_start_ms: round(startupBusyMs, 0),
    agent_busy_after_change_ms: round(median(settle), 0),
  },
  { destinations: size, repetitions: add.length, quiet_ms: QUIET_MS, changed: `${CHANGE_ADDR}/32 in file ${chunkFile("bench", lastChunk)}`, samples: { add_ms: add, delete_ms: del, busy_after_change_ms: settle, agent_apply_add_ms: agentAdd, agent_apply_delete_ms: agentDel, raw_add_ms: rawAdd, raw_delete_ms: rawDel } },
);
process.exit(0);
