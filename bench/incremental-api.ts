// Benchmark 3b: the API path of the incremental change. One CIDR added to and removed from a
// 100k-CIDR policy held by the real API server (test/kube/support/cluster.ts), from the API
// write to the moment the kernel enforces it. The address set is 11 EgressAddressSet objects
// (at most 9,990 entries each); one cluster-mode agent (production defaults) watches them
// and enforces in the node namespace of a node/world pair; the prober of `incremental`
// (flowtool probe: one UDP datagram from a fresh socket every millisecond) sees the verdict
// flip. Each change is one JSON merge patch of one chunk object, the last by default (its
// whole CIDR list, as `kubectl apply` sends for a custom resource), timed from the request
// being sent and from its response returning (the main figures, like convergence). A plain
// watch of the address sets shows when the API server delivered the change to a watcher.
import { join } from "node:path";
import { z } from "zod";
import { eventually, startAgent } from "../test/support/agent.js";
import { startCluster } from "../test/kube/support/cluster.js";
import { createTopology } from "../test/support/netns.js";
import { Api, ApiError, GROUP_PATH, Named, timedPool } from "./kube.js";
import {
  CHANGE_ADDR,
  IPERF_PORT,
  TARGET,
  agentApplies,
  chunkName,
  chunkObject,
  chunkTexts,
  destinations,
  log,
  median,
  now,
  num,
  onExit,
  options,
  policyObject,
  quantile,
  report,
  round,
  startProber,
  tempDir,
  timeChange,
  waitAgentIdle,
  type ChangeTimes,
  changeOptions,
} from "./lib.js";

const o = options();
const { size, reps, QUIET_MS, IDLE_TIMEOUT_MS, BUDGET_MS } = changeOptions(o);
const SET = "bench";
const NODE_NAME = "bench-node";
const NODE_LABEL = { "nftegress.io/bench": "incremental-api" };

const dests = destinations(size);
const chunks = chunkTexts(dests);
/** The object changed: the last (at 100k it holds 100 entries, as the last file of
 *  `incremental` does); --chunk=N changes a full one instead. */
const target = num(o, "chunk", chunks.length - 1, chunks.length - 1);
if (!chunks[target]) throw new Error(`--chunk must be below ${chunks.length}`);
const changedPath = `${GROUP_PATH}/egressaddresssets/${chunkName(SET, target)}`;
/** The two bodies of the change, serialized before timing starts. */
const patchBody = (adding: boolean) => JSON.stringify({ spec: { cidrs: [...(chunks[target] ?? []), ...(adding ? [CHANGE_ADDR] : [])] } });
const bodies = { add: patchBody(true), remove: patchBody(false) };
const SetView = z.object({ metadata: z.object({ resourceVersion: z.string() }), spec: z.object({ cidrs: z.array(z.string()) }) });

log(`incremental-api: ${size} destinations in ${chunks.length} EgressAddressSet objects, ${reps} repetitions`);
const tStart = now();
// The harness stops etcd and the API server on exit too (Ctrl-C, failure).
const cluster = await startCluster();
const clusterS = (now() - tStart) / 1000;
log(`API server up at ${cluster.server} (${clusterS.toFixed(1)} s)`);
const api = Api.of(cluster, 8);
onExit(() => api.close());
const dir = tempDir("incapi");

// The node, the address set, the policy selecting the node: all before the agent starts.
await api.create("/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: NODE_NAME, labels: NODE_LABEL } });
const created = await timedPool(chunks, 4, (cidrs, c) => api.create(`${GROUP_PATH}/egressaddresssets`, chunkObject(SET, c, cidrs)));
await api.create(`${GROUP_PATH}/egresspolicies`, policyObject(SET, { matchLabels: NODE_LABEL }));
log(`created ${chunks.length} address-set objects in ${created.wall_s} s and the policy`);

// When the API server delivered each version of the changed chunk to a plain watcher.
const delivered = new Map<string, number>();
const watch = await api.watch(`${GROUP_PATH}/egressaddresssets`, (type, raw, at) => {
  const m = Named.parse(raw).metadata;
  if (type === "MODIFIED" && m.name === chunkName(SET, target) && m.resourceVersion) delivered.set(m.resourceVersion, at);
});
onExit(() => watch.stop());

const topo = await createTopology("bapi");
onExit(() => void topo.close());
const agent = await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", NODE_NAME, "--netns", topo.node, "--failsafe", "/dev/null", "--state-dir", join(dir, "state")]);
onExit(() => {
  if (agent.child.exitCode === null) agent.child.kill("SIGKILL");
});
const agentLog = () => `agent log:\n${agent.log()}`;
const tAgent = now();
await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200, 300_000).catch((e: Error) => {
  throw new Error(`${e.message}\n${agentLog().slice(-3000)}`);
});
const firstApplyMs = now() - tAgent;
// Busy after ready: until its last apply before a quiet window (not counting the window).
const idleStart = now();
const startupBusyMs = (await waitAgentIdle(agent, QUIET_MS, IDLE_TIMEOUT_MS)) - idleStart;
const elements = (await agentApplies(agent.port))?.elements ?? NaN;
log(`agent enforcing ${elements} set elements ${firstApplyMs.toFixed(0)} ms after start, idle ${startupBusyMs.toFixed(0)} ms after that`);

// The prober, inside the node namespace. The list's last entry covers TARGET: the whole set is in.
const prober = await startProber(topo.node, agentLog);
if ((await prober.until("allowed", TARGET, IPERF_PORT, 5000)).attempts !== 1) throw new Error(`${TARGET} is not allowed: the address set is not enforced`);
const setup = { prober, agent, addr: CHANGE_ADDR, port: IPERF_PORT, quietMs: QUIET_MS, timeoutMs: IDLE_TIMEOUT_MS };

interface ApiChange extends ChangeTimes {
  /** The write's response returned. */
  returned: number;
  /** A plain watcher got the new version (NaN: not seen). */
  watched: number;
}

/** The merge patch (not retried: a retry would be in the timing); checks that the object now
 *  holds (or no longer holds) the CIDR. */
async function write(adding: boolean): Promise<{ returned: number; resourceVersion: string }> {
  const r = await api.raw("PATCH", changedPath, adding ? bodies.add : bodies.remove, "application/merge-patch+json");
  const returned = now();
  if (r.status !== 200) throw new ApiError(r.status, "PATCH", changedPath, r.body);
  const res = SetView.parse(JSON.parse(r.body));
  const want = (chunks[target]?.length ?? 0) + (adding ? 1 : 0);
  if (res.spec.cidrs.includes(CHANGE_ADDR) !== adding || res.spec.cidrs.length !== want) throw new Error(`the write did not ${adding ? "add" : "remove"} ${CHANGE_ADDR}: ${res.spec.cidrs.length} entries`);
  return { returned, resourceVersion: res.metadata.resourceVersion };
}

async function change(adding: boolean): Promise<ApiChange> {
  let w = { returned: NaN, resourceVersion: "" };
  const c = await timeChange(setup, adding, async () => {
    w = await write(adding);
  });
  return { ...c, returned: w.returned, watched: delivered.get(w.resourceVersion) ?? NaN };
}

const samples = { add: [] as ApiChange[], remove: [] as ApiChange[] };
const tLoop = now();
for (let r = 0; r < reps; r++) {
  if (r > 0 && now() - tLoop > BUDGET_MS) {
    log(`time budget of ${BUDGET_MS / 1000} s used up: stopping after ${r} repetitions`);
    break;
  }
  const a = await change(true);
  samples.add.push(a);
  const d = await change(false);
  samples.remove.push(d);
  const line = (x: ApiChange) => `${(x.enforced - x.returned).toFixed(1)} ms (from send ${(x.enforced - x.start).toFixed(1)}, write ${(x.returned - x.start).toFixed(1)}, watch ${(x.watched - x.returned).toFixed(1)}, agent apply ${x.agentMs.toFixed(1)})`;
  log(`rep ${r + 1}/${reps}: add ${line(a)}; delete ${line(d)}`);
}

watch.stop();
await agent.stop("SIGTERM");
api.close();
await cluster.stop();
await topo.close();

const fromReturn = (xs: readonly ApiChange[]) => xs.map((x) => x.enforced - x.returned);
const fromSend = (xs: readonly ApiChange[]) => xs.map((x) => x.enforced - x.start);
const all = [...samples.add, ...samples.remove];
const writeMs = all.map((x) => x.returned - x.start);
const watchMs = all.map((x) => x.watched - x.returned);
const ms = (xs: readonly number[]) => xs.map((x) => round(x, 1));
const kind = (name: "add" | "delete", xs: readonly ApiChange[]) => ({
  [`incremental_api_${name}_ms`]: round(median(fromReturn(xs)), 1),
  [`incremental_api_${name}_from_send_ms`]: round(median(fromSend(xs)), 1),
  [`incremental_api_${name}_p90_ms`]: round(quantile(fromReturn(xs), 0.9), 1),
  [`incremental_api_${name}_max_ms`]: round(quantile(fromReturn(xs), 1), 1),
  [`agent_apply_${name}_ms`]: round(median(xs.map((x) => x.agentMs)), 1),
});
const raw = (xs: readonly ApiChange[]) => ({ from_response_ms: ms(fromReturn(xs)), from_send_ms: ms(fromSend(xs)), write_ms: ms(xs.map((x) => x.returned - x.start)), watch_after_response_ms: ms(xs.map((x) => x.watched - x.returned)), agent_apply_ms: ms(xs.map((x) => x.agentMs)), busy_after_change_ms: ms(xs.map((x) => x.idleAt - x.start)) });
report(
  o,
  "incremental-api",
  {
    ...kind("add", samples.add),
    ...kind("delete", samples.remove),
    api_write_p50_ms: round(median(writeMs), 1),
    api_write_max_ms: round(quantile(writeMs, 1), 1),
    watch_after_response_p50_ms: round(median(watchMs), 1),
    agent_busy_after_change_ms: round(median(all.map((x) => x.idleAt - x.start)), 0),
    agent_first_apply_ms: round(firstApplyMs, 0),
    agent_busy_after_start_ms: round(startupBusyMs, 0),
    ruleset_elements: elements,
  },
  {
    destinations: size,
    address_set_objects: chunks.length,
    entries_per_object: chunks.map((c) => c.length),
    repetitions: samples.add.length,
    quiet_ms: QUIET_MS,
    changed: `${CHANGE_ADDR} added to / removed from spec.cidrs of EgressAddressSet ${chunkName(SET, target)}`,
    write: `one JSON merge patch (application/merge-patch+json) of ${changedPath} carrying the whole spec.cidrs list (${bodies.add.length} / ${bodies.remove.length} bytes), the way kubectl apply updates a custom resource`,
    enforced_means: "the prober in the node namespace (one UDP datagram to the changed address from a fresh socket every ms) sees the new verdict: sent (add) or EPERM from the output drop (delete)",
    main_figures_from: "the write's response returning; *_from_send_ms from just before the request was sent",
    agent: "cluster mode, production defaults (report 60 s, drift check 5 s, commit-confirmed 10 s), --failsafe /dev/null; no controller running",
    setup_s: { api_server: round(clusterS, 1), create_address_sets: created.wall_s },
    setup_retries: Object.fromEntries(api.retries),
    samples: { add: raw(samples.add), delete: raw(samples.remove) },
  },
);
process.exit(0);
