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
import { createInterface } from "node:readline";
import { eventually, startAgent } from "../test/support/agent.js";
import { createTopology } from "../test/support/netns.js";
import {
  CHANGE_ADDR,
  CHUNK,
  agentApplies,
  waitAgentIdle,
  FLOWTOOL,
  IPERF_PORT,
  NODE,
  RAW_TABLE,
  chunkFile,
  chunkYaml,
  destText,
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
  sleep,
  spawnIn,
  stateDirArgs,
  tempDir,
  timed,
  writeFiles,
} from "./lib.js";

const o = options();
const size = num(o, "size", 100_000, 1000);
const reps = num(o, "reps", 7, 2);
/** The agent counts as idle when it answers and applied nothing for this long. */
const QUIET_MS = num(o, "quiet-ms", 2000, 500);
const IDLE_TIMEOUT_MS = num(o, "idle-timeout-s", 900, 60) * 1000;
/** Repetitions stop early (at least one runs) when the benchmark has run this long. */
const BUDGET_MS = num(o, "budget-s", 900, 60) * 1000;

const dir = tempDir("inc");
const policies = join(dir, "policies");
const dests = destinations(size);
writeFiles(policies, policyFiles("bench", dests));
const texts = dests.map(destText);
const lastChunk = Math.max(1, Math.ceil(texts.length / CHUNK)) - 1;
const lastChunkCidrs = texts.slice(lastChunk * CHUNK);
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

const appliesNow = () => agentApplies(agent.port);
const waitIdle = (maxMs: number) => waitAgentIdle(agent, QUIET_MS, maxMs);
const idleStart = now();
await waitIdle(IDLE_TIMEOUT_MS);
const startupBusyMs = now() - idleStart;
log(`agent idle ${startupBusyMs.toFixed(0)} ms after ready`);

// The prober, inside the node namespace.
const prober = spawnIn(topo.node, [NODE, FLOWTOOL, "probe"]);
const lines = createInterface({ input: prober.stdout ?? process.stdin });
const waiting: ((line: string) => void)[] = [];
lines.on("line", (l) => waiting.shift()?.(l));
const nextLine = () => new Promise<string>((resolve) => waiting.push(resolve));
await nextLine(); // "ready"
interface ProbeResult {
  t: number;
  attempts: number;
  ok: boolean;
  error?: string;
}
async function probe(want: "allowed" | "denied", timeoutMs = 60_000): Promise<ProbeResult> {
  const line = nextLine();
  prober.stdin?.write(`${want} ${CHANGE_ADDR} ${IPERF_PORT} ${timeoutMs}\n`);
  const r = JSON.parse(await line) as ProbeResult;
  if (!r.ok) throw new Error(`probe ${want} ${CHANGE_ADDR}: ${r.error ?? "failed"}\nagent log:\n${agent.log().slice(-2000)}`);
  return r;
}

/** File write to enforced; file write to the agent idle again; the agent's own apply time. */
async function change(withChange: boolean): Promise<{ ms: number; settleMs: number; agentMs: number }> {
  if ((await probe(withChange ? "denied" : "allowed", 5000)).attempts !== 1) throw new Error("state before the change is not settled");
  const h0 = await appliesNow();
  const start = now();
  writeLastChunk(withChange);
  const r = await probe(withChange ? "allowed" : "denied", IDLE_TIMEOUT_MS);
  const ms = r.t - start;
  // Let the agent finish (revocation, a follow-up reconcile) before the next step.
  const idleAt = await waitIdle(IDLE_TIMEOUT_MS);
  const h1 = await appliesNow();
  // Summed over the agent's applies in the window (the change, plus any no-op follow-up).
  const agentMs = h0 && h1 && h1.count > h0.count ? (h1.sum - h0.sum) * 1000 : NaN;
  return { ms, settleMs: idleAt - start, agentMs };
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
