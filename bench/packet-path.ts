// Benchmark 1: the packet path. A node/world namespace pair (test/support/netns.ts); iperf3 and
// a connect server listen on TARGET in the world; the node runs the clients under one of four
// rulesets, loaded in turn (interleaved, rotated order each repetition):
//   none   no ruleset at all (no conntrack either): the baseline of throughput_ratio
//   ours   `nftegress apply` of the 100k-CIDR EgressPolicy (stride hash sets)
//   raw    the best hand-written script: one interval set, established first
//   naive  one rule per destination, then established, then drop
// Figures are medians over repetitions of ratios measured back to back in the same repetition.
import { sh } from "../test/support/exec.js";
import { createTopology } from "../test/support/netns.js";
import {
  CHANGE_ADDR,
  CLI,
  CONNECT_PORT,
  FLOWTOOL,
  IPERF_PORT,
  NODE,
  TARGET,
  destinations,
  log,
  median,
  naiveScript,
  num,
  onExit,
  options,
  pairedRatio,
  policyFiles,
  rawScript,
  report,
  round,
  runIn,
  sleep,
  spawnIn,
  tempDir,
  writeFiles,
} from "./lib.js";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";

const nproc = () => availableParallelism();

for (const tool of ["iperf3", "taskset", "conntrack"]) {
  if (sh(tool, ["--version"]).code === null) throw new Error(`${tool} is not installed (Debian: apt-get install ${tool === "taskset" ? "util-linux" : tool})`);
}

const o = options();
const size = num(o, "size", 100_000, 1000);
const naiveSize = num(o, "naive-size", 100_000, 1000);
const reps = num(o, "reps", 7, 1);
const tcpSeconds = num(o, "tcp-seconds", 4, 1);
const connectSeconds = num(o, "connect-seconds", 2, 1);
const udpSeconds = num(o, "udp-seconds", 2, 1);
const parallel = num(o, "connect-parallel", 4, 2);

type Variant = "none" | "ours" | "raw" | "naive";
const VARIANTS: Variant[] = ["none", "ours", "raw", "naive"];

const dir = tempDir("pp");
const dests = destinations(size);
writeFiles(join(dir, "ours"), policyFiles("bench", dests));
writeFileSync(join(dir, "raw.nft"), rawScript(dests));
writeFileSync(join(dir, "naive.nft"), naiveScript(size === naiveSize ? dests : destinations(naiveSize)));

log(`packet path: ${size} destinations (naive ${naiveSize}), ${reps} repetitions, tcp ${tcpSeconds}s, connects ${connectSeconds}s x${parallel}, udp ${udpSeconds}s`);
const topo = await createTopology("bpp");
onExit(() => void topo.close());
// Clients on CPU 0, servers on the last CPU: less scheduler noise between the two ends.
const PIN = num(o, "pin", 1, 1) === 1 && nproc() > 1;
const client = (argv: string[]) => (PIN ? ["taskset", "-c", "0", ...argv] : argv);
const server = (argv: string[]) => (PIN ? ["taskset", "-c", String(nproc() - 1), ...argv] : argv);
const iperf = spawnIn(topo.world, server(["iperf3", "-s", "-B", TARGET, "-p", String(IPERF_PORT), "--forceflush"]));
const connectServer = spawnIn(topo.world, server([NODE, FLOWTOOL, "server", TARGET, String(CONNECT_PORT)]));
await new Promise<void>((resolve, reject) => {
  connectServer.stdout?.once("data", () => resolve());
  connectServer.once("exit", (c) => reject(new Error(`connect server exited ${c}`)));
});
await sleep(300);
if (iperf.exitCode !== null) throw new Error("iperf3 server exited");

const loadMs: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };

async function flushConntrack(): Promise<void> {
  await runIn(topo.node, ["conntrack", "-F"]).catch(() => undefined);
}

async function load(v: Variant): Promise<void> {
  await runIn(topo.node, ["nft", "flush", "ruleset"]);
  await flushConntrack();
  const t0 = performance.now();
  if (v === "ours") await runIn(topo.node, [NODE, CLI, "apply", "-f", join(dir, "ours"), "--netns", topo.node, "--failsafe", "/dev/null"]);
  if (v === "raw") await runIn(topo.node, ["nft", "-f", join(dir, "raw.nft")]);
  if (v === "naive") await runIn(topo.node, ["nft", "-f", join(dir, "naive.nft")]);
  loadMs[v].push(performance.now() - t0);
  // Sanity: a ruleset really enforces (a destination off the list is dropped), none does not.
  const out = await runIn(topo.node, [NODE, FLOWTOOL, "probe"], `${v === "none" ? "allowed" : "denied"} ${CHANGE_ADDR} ${IPERF_PORT} 2000\n`);
  const verdict = JSON.parse(out.trim().split("\n").pop() ?? "{}") as { ok?: boolean; attempts?: number };
  if (!verdict.ok || verdict.attempts !== 1) throw new Error(`ruleset ${v}: ${CHANGE_ADDR} is ${v === "none" ? "not allowed" : "not dropped"}: ${out}`);
}

interface IperfJson {
  end?: {
    sum_sent?: { packets?: number; seconds?: number };
    sum_received?: { bits_per_second?: number; packets?: number; lost_packets?: number; seconds?: number };
  };
  error?: string;
}

async function iperf3(args: string[]): Promise<IperfJson> {
  for (let attempt = 0; ; attempt++) {
    const text = await runIn(topo.node, client(["iperf3", "-c", TARGET, "-p", String(IPERF_PORT), "-J", ...args])).catch((e: Error) => e.message);
    let json: IperfJson | null = null;
    try {
      json = JSON.parse(text.slice(text.indexOf("{"))) as IperfJson;
    } catch {
      json = null;
    }
    if (json && !json.error) return json;
    // The server may still be closing the previous test.
    if (attempt < 5 && /busy|connect/i.test(text)) {
      await sleep(500);
      continue;
    }
    throw new Error(`iperf3 ${args.join(" ")}: ${json?.error ?? text.slice(0, 300)}`);
  }
}

async function tcpBulk(): Promise<number> {
  const j = await iperf3(["-t", String(tcpSeconds), ...(tcpSeconds >= 3 ? ["-O", "1"] : [])]);
  return (j.end?.sum_received?.bits_per_second ?? NaN) / 1e9;
}

async function connects(): Promise<number> {
  const text = await runIn(topo.node, client([NODE, FLOWTOOL, "connect", TARGET, String(CONNECT_PORT), String(connectSeconds), String(parallel)]));
  const j = JSON.parse(text) as { connects: number; errors: number; seconds: number };
  if (j.errors > j.connects / 100) throw new Error(`connects: ${j.errors} errors for ${j.connects} connects`);
  return j.connects / j.seconds;
}

/** UDP datagrams that reached the world's UDP layer so far (delivered, or dropped there because
 *  the receiving socket's buffer was full, or for want of a socket). */
async function worldUdpArrived(): Promise<number> {
  const lines = (await runIn(topo.world, ["cat", "/proc/net/snmp"])).split("\n").filter((l) => l.startsWith("Udp:"));
  const keys = lines[0]?.split(/\s+/) ?? [];
  const vals = lines[1]?.split(/\s+/).map(Number) ?? [];
  const get = (k: string) => vals[keys.indexOf(k)] ?? NaN;
  return get("InDatagrams") + get("RcvbufErrors") + get("NoPorts");
}

/** One-way 64-byte UDP, packets per second: arrived in the world (the kernel's count, the
 *  figure), read by the iperf3 receiver (its report: also limited by how fast that one
 *  process reads, so noisy on a small shared machine), and sent. */
async function udpRate(): Promise<{ arrived: number; received: number; sent: number }> {
  const before = await worldUdpArrived();
  const j = await iperf3(["-u", "-l", "64", "-b", "0", "-t", String(udpSeconds)]);
  const arrived = (await worldUdpArrived()) - before;
  // The receiver's report: `packets` is the highest sequence number seen, `lost_packets` the gaps.
  const rx = j.end?.sum_received;
  const tx = j.end?.sum_sent;
  const secs = tx?.seconds ?? NaN;
  return { arrived: arrived / secs, received: ((rx?.packets ?? NaN) - (rx?.lost_packets ?? NaN)) / (rx?.seconds ?? NaN), sent: (tx?.packets ?? NaN) / secs };
}

const tcp: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };
const conn: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };
const udp: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };
const udpApp: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };
const udpSent: Record<Variant, number[]> = { none: [], ours: [], raw: [], naive: [] };

// Warm-up (not recorded): the world's servers reach steady state (JIT, socket caches).
await load("none");
await udpRate();
await tcpBulk();
await connects();

for (let r = 0; r < reps; r++) {
  const order = [...VARIANTS.slice(r % VARIANTS.length), ...VARIANTS.slice(0, r % VARIANTS.length)];
  for (const v of order) {
    await load(v);
    // Each measurement starts with an empty conntrack table: the connect test leaves hundreds
    // of thousands of closed entries whose garbage collection would disturb what follows.
    await flushConntrack();
    const u = await udpRate();
    await flushConntrack();
    tcp[v][r] = await tcpBulk();
    await flushConntrack();
    conn[v][r] = await connects();
    udp[v][r] = u.arrived;
    udpApp[v][r] = u.received;
    udpSent[v][r] = u.sent;
    log(`rep ${r + 1}/${reps} ${v.padEnd(5)}: tcp ${tcp[v][r]?.toFixed(2)} Gbit/s, ${conn[v][r]?.toFixed(0)} connects/s, udp ${u.arrived.toFixed(0)} pkt/s arrived (${u.received.toFixed(0)} read by iperf3, ${u.sent.toFixed(0)} sent); loaded in ${loadMs[v][r]?.toFixed(0)} ms`);
  }
}
await runIn(topo.node, ["nft", "flush", "ruleset"]);

const med = (m: Record<Variant, number[]>, v: Variant) => round(median(m[v]), 3);
report(
  o,
  "packet-path",
  {
    throughput_ratio: round(pairedRatio(tcp.ours, tcp.none)),
    naive_throughput_ratio: round(pairedRatio(tcp.naive, tcp.none)),
    new_flow_ratio: round(pairedRatio(conn.ours, conn.raw)),
    udp_rate_ratio: round(pairedRatio(udp.ours, udp.raw)),
    udp_app_received_ratio: round(pairedRatio(udpApp.ours, udpApp.raw)),
    raw_throughput_ratio: round(pairedRatio(tcp.raw, tcp.none)),
    naive_new_flow_ratio: round(pairedRatio(conn.naive, conn.raw)),
    naive_udp_rate_ratio: round(pairedRatio(udp.naive, udp.raw)),
    ours_udp_rate_vs_none: round(pairedRatio(udp.ours, udp.none)),
    raw_udp_rate_vs_none: round(pairedRatio(udp.raw, udp.none)),
    ours_new_flow_vs_none: round(pairedRatio(conn.ours, conn.none)),
    raw_new_flow_vs_none: round(pairedRatio(conn.raw, conn.none)),
    tcp_none_gbps: med(tcp, "none"),
    tcp_ours_gbps: med(tcp, "ours"),
    tcp_raw_gbps: med(tcp, "raw"),
    tcp_naive_gbps: med(tcp, "naive"),
    connects_none_per_s: med(conn, "none"),
    connects_ours_per_s: med(conn, "ours"),
    connects_raw_per_s: med(conn, "raw"),
    connects_naive_per_s: med(conn, "naive"),
    udp_none_pps: med(udp, "none"),
    udp_ours_pps: med(udp, "ours"),
    udp_raw_pps: med(udp, "raw"),
    udp_naive_pps: med(udp, "naive"),
  },
  {
    destinations: size,
    naive_destinations: naiveSize,
    repetitions: reps,
    tcp_seconds: tcpSeconds,
    connect_seconds: connectSeconds,
    connect_parallel: parallel,
    udp_seconds: udpSeconds,
    target: TARGET,
    samples: { tcp_gbps: tcp, connects_per_s: conn, udp_arrived_pps: udp, udp_iperf3_received_pps: udpApp, udp_sent_pps: udpSent, load_ms: loadMs },
  },
);
process.exit(0);
