// Benchmark 1: the packet path. Two node/world namespace pairs (test/support/netns.ts), each
// with iperf3 and a connect server on TARGET in its world and the clients in its node:
//   none   pair B: no ruleset at all (so no conntrack either): the baseline of throughput_ratio
//   ours   pair A: `nftegress apply` of the 100k-CIDR EgressPolicy (stride hash sets)
//   raw    pair A: the best hand-written script: one interval set, established first
//   naive  pair A: one rule per destination, then established, then drop
// The three rulesets are loaded once into pair A as three tables; all but the one measured are
// dormant (a dormant table's hooks are unregistered: it costs nothing), so switching takes a
// few milliseconds and each measurement is taken right next to the others: for every kind of
// measurement the four variants run back to back, in a rotated order. Figures are medians
// over the repetitions of ratios within one repetition.
import { sh } from "../test/support/exec.js";
import { createTopology, type Topology } from "../test/support/netns.js";
import {
  CHANGE_ADDR,
  CLI,
  CONNECT_PORT,
  FLOWTOOL,
  IPERF_PORT,
  NAIVE_TABLE,
  NODE,
  RAW_TABLE,
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
  stateDirArgs,
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
const reps = num(o, "reps", 9, 1);
const tcpSeconds = num(o, "tcp-seconds", 4, 1);
const connectSeconds = num(o, "connect-seconds", 2, 1);
const udpSeconds = num(o, "udp-seconds", 2, 1);
const parallel = num(o, "connect-parallel", 4, 2);
// --revocation-mark=MASK: ours re-checks flows by conntrack mark (src/nft/recheck.ts); the
// results go to packet-path-mark.json.
const revocationMark = o.raw.get("revocation-mark");
const markArgs = revocationMark ? ["--revocation-mark", revocationMark] : [];

type Variant = "none" | "ours" | "raw" | "naive";
const VARIANTS: Variant[] = ["none", "ours", "raw", "naive"];

const dir = tempDir("pp");
const dests = destinations(size);
writeFiles(join(dir, "ours"), policyFiles("bench", dests));
writeFileSync(join(dir, "raw.nft"), rawScript(dests));
writeFileSync(join(dir, "naive.nft"), naiveScript(size === naiveSize ? dests : destinations(naiveSize)));

log(`packet path: ${size} destinations (naive ${naiveSize}), ${reps} repetitions, tcp ${tcpSeconds}s, connects ${connectSeconds}s x${parallel}, udp ${udpSeconds}s`);
// Clients on CPU 0, servers on the last CPU: less scheduler noise between the two ends.
const PIN = num(o, "pin", 1, 1) === 1 && nproc() > 1;
const client = (argv: string[]) => (PIN ? ["taskset", "-c", "0", ...argv] : argv);
const server = (argv: string[]) => (PIN ? ["taskset", "-c", String(nproc() - 1), ...argv] : argv);

async function pair(tag: string): Promise<Topology> {
  const t = await createTopology(tag);
  onExit(() => void t.close());
  const iperf = spawnIn(t.world, server(["iperf3", "-s", "-B", TARGET, "-p", String(IPERF_PORT), "--forceflush"]));
  const connectServer = spawnIn(t.world, server([NODE, FLOWTOOL, "server", TARGET, String(CONNECT_PORT)]));
  await new Promise<void>((resolve, reject) => {
    connectServer.stdout?.once("data", () => resolve());
    connectServer.once("exit", (c) => reject(new Error(`connect server exited ${c}`)));
  });
  await sleep(300);
  if (iperf.exitCode !== null) throw new Error("iperf3 server exited");
  return t;
}
const A = await pair("bppa");
const B = await pair("bppb");
const where = (v: Variant): Topology => (v === "none" ? B : A);

const TABLES: Record<Exclude<Variant, "none">, string> = { ours: "nftegress", raw: RAW_TABLE, naive: NAIVE_TABLE };
const loadMs: Record<string, number> = {};
{
  let t0 = performance.now();
  await runIn(A.node, [NODE, CLI, "apply", "-f", join(dir, "ours"), "--netns", A.node, "--failsafe", "/dev/null", ...markArgs, ...stateDirArgs(dir, "apply")]);
  loadMs["ours"] = performance.now() - t0;
  t0 = performance.now();
  await runIn(A.node, ["nft", "-f", join(dir, "raw.nft")]);
  loadMs["raw"] = performance.now() - t0;
  t0 = performance.now();
  await runIn(A.node, ["nft", "-f", join(dir, "naive.nft")]);
  loadMs["naive"] = performance.now() - t0;
}

/** Makes exactly one of pair A's tables active (none: all dormant; its traffic uses pair B). */
async function activate(v: Variant): Promise<void> {
  const lines = Object.entries(TABLES).map(([k, table]) => (k === v ? `add table inet ${table}\n` : `add table inet ${table} { flags dormant; }\n`));
  await runIn(A.node, ["nft", "-f", "-"], lines.join(""));
}

/** Whether a new flow to a destination off the list is dropped in a pair. */
async function dropsUnlisted(t: Topology): Promise<boolean> {
  const out = await runIn(t.node, [NODE, FLOWTOOL, "probe"], `denied ${CHANGE_ADDR} ${IPERF_PORT} 300\n`);
  const verdict = JSON.parse(out.trim().split("\n").pop() ?? "{}") as { ok?: boolean; error?: string };
  if (!verdict.ok && verdict.error !== "still sent") throw new Error(`probe: ${out}`);
  return verdict.ok === true;
}

// The switch works: each table alone enforces, all dormant enforce nothing, pair B nothing.
for (const v of [...VARIANTS, "none"] as Variant[]) {
  await activate(v);
  if ((await dropsUnlisted(A)) !== (v !== "none")) throw new Error(`pair A with ${v} active: ${CHANGE_ADDR} ${v === "none" ? "dropped" : "not dropped"}`);
}
if (await dropsUnlisted(B)) throw new Error(`pair B drops ${CHANGE_ADDR}`);

async function flushConntrack(t: Topology): Promise<void> {
  await runIn(t.node, ["conntrack", "-F"]).catch(() => undefined);
}
interface IperfJson {
  end?: {
    sum_sent?: { packets?: number; seconds?: number };
    sum_received?: { bits_per_second?: number; packets?: number; lost_packets?: number; seconds?: number };
  };
  error?: string;
}

async function iperf3(t: Topology, args: string[]): Promise<IperfJson> {
  for (let attempt = 0; ; attempt++) {
    const text = await runIn(t.node, client(["iperf3", "-c", TARGET, "-p", String(IPERF_PORT), "-J", ...args])).catch((e: Error) => e.message);
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

async function tcpBulk(t: Topology): Promise<number> {
  const j = await iperf3(t, ["-t", String(tcpSeconds), ...(tcpSeconds >= 3 ? ["-O", "1"] : [])]);
  return (j.end?.sum_received?.bits_per_second ?? NaN) / 1e9;
}

async function connects(t: Topology): Promise<number> {
  const text = await runIn(t.node, client([NODE, FLOWTOOL, "connect", TARGET, String(CONNECT_PORT), String(connectSeconds), String(parallel)]));
  const j = JSON.parse(text) as { connects: number; errors: number; seconds: number };
  if (j.errors > j.connects / 100) throw new Error(`connects: ${j.errors} errors for ${j.connects} connects`);
  return j.connects / j.seconds;
}

/** UDP datagrams that reached a world's UDP layer so far (delivered, or dropped there because
 *  the receiving socket's buffer was full, or for want of a socket). */
async function worldUdpArrived(t: Topology): Promise<number> {
  const lines = (await runIn(t.world, ["cat", "/proc/net/snmp"])).split("\n").filter((l) => l.startsWith("Udp:"));
  const keys = lines[0]?.split(/\s+/) ?? [];
  const vals = lines[1]?.split(/\s+/).map(Number) ?? [];
  const get = (k: string) => vals[keys.indexOf(k)] ?? NaN;
  return get("InDatagrams") + get("RcvbufErrors") + get("NoPorts");
}

/** One-way 64-byte UDP, packets per second: arrived in the world (the kernel's count, the
 *  figure), read by the iperf3 receiver (its report: also limited by how fast that one
 *  process reads, so noisy on a small shared machine), and sent. */
async function udpRate(t: Topology): Promise<{ arrived: number; received: number; sent: number }> {
  const before = await worldUdpArrived(t);
  const j = await iperf3(t, ["-u", "-l", "64", "-b", "0", "-t", String(udpSeconds)]);
  const arrived = (await worldUdpArrived(t)) - before;
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

// Warm-up (not recorded): the worlds' servers reach steady state (JIT, socket caches).
await activate("none");
for (const t of [A, B]) {
  await udpRate(t);
  await tcpBulk(t);
  await connects(t);
}

type Kind = "udp" | "tcp" | "connects";
const KINDS: Kind[] = ["udp", "tcp", "connects"];
for (let r = 0; r < reps; r++) {
  for (const [k, kind] of KINDS.entries()) {
    const shift = (r + k) % VARIANTS.length;
    for (const v of [...VARIANTS.slice(shift), ...VARIANTS.slice(0, shift)]) {
      const t = where(v);
      await activate(v);
      // An empty conntrack table for every run: the connect test leaves hundreds of thousands
      // of closed entries whose garbage collection would disturb what follows.
      await flushConntrack(t);
      if (kind === "udp") {
        const u = await udpRate(t);
        udp[v][r] = u.arrived;
        udpApp[v][r] = u.received;
        udpSent[v][r] = u.sent;
      } else if (kind === "tcp") tcp[v][r] = await tcpBulk(t);
      else conn[v][r] = await connects(t);
    }
  }
  const line = (v: Variant) => `${v} ${tcp[v][r]?.toFixed(2)} Gbit/s ${conn[v][r]?.toFixed(0)} conn/s ${udp[v][r]?.toFixed(0)} udp pkt/s`;
  log(`rep ${r + 1}/${reps}: ${VARIANTS.map(line).join(" | ")}`);
}

const med = (m: Record<Variant, number[]>, v: Variant) => round(median(m[v]), 3);
report(
  o,
  revocationMark ? "packet-path-mark" : "packet-path",
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
    revocation: revocationMark ? `conntrack mark ${revocationMark}` : "flows set",
    connect_seconds: connectSeconds,
    connect_parallel: parallel,
    udp_seconds: udpSeconds,
    target: TARGET,
    load_ms: loadMs,
    samples: { tcp_gbps: tcp, connects_per_s: conn, udp_arrived_pps: udp, udp_iperf3_received_pps: udpApp, udp_sent_pps: udpSent },
  },
);
process.exit(0);
