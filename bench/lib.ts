// Shared parts of the benchmarks: deterministic destination lists, the three rulesets compared
// (ours as EgressPolicy YAML files or API objects, the best hand-written raw nft script, the
// naive one-rule-per-destination script), statistics, options, results, the machine
// description, cleanup of everything a benchmark creates (also on Ctrl-C), and the agent under
// test: its metrics, idleness, and the prober that times a change into the kernel.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import yaml from "js-yaml";
import { z } from "zod";
import { SET_LABEL, type EgressAddressSet } from "../src/api/addressset.js";
import type { EgressPolicy } from "../src/api/policy.js";
import { ROOT, must, sh } from "../test/support/exec.js";

// ---- destinations --------------------------------------------------------------------------

/** An IPv4 destination: address as an unsigned 32-bit number, prefix length. */
export interface Dest {
  addr: number;
  len: number;
}

/** The tested destination: a world address of the test topology, served by iperf3. */
export const TARGET = "198.51.100.40";
/** The last entry of every list: covers TARGET. A /16 is the worst case for the stride layout
 *  (its lookup is the last of five), and indifferent to one interval set. */
export const LAST: Dest = { addr: ip("198.51.0.0"), len: 16 };
/** Ports the rules allow: iperf3 (TCP control and bulk, UDP data) and the connect server. */
export const IPERF_PORT = 5201;
export const CONNECT_PORT = 5202;
/** A world address (routed, listener-free on UDP 5201) that no generated list covers. */
export const CHANGE_ADDR = "203.0.113.77";

export function ip(text: string): number {
  return text.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}

export function ipText(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export function destText(d: Dest): string {
  return d.len === 32 ? ipText(d.addr) : `${ipText(d.addr)}/${d.len}`;
}

import { rng } from "../test/support/random.js";

export { rng };

// /16 blocks no generated entry may touch: the test ranges and the world's addresses
// (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), link-local/metadata.
const RESERVED_BLOCKS = new Set([ip("192.0.0.0"), ip("198.51.0.0"), ip("203.0.0.0"), ip("169.254.0.0")].map((a) => a >>> 16));

/**
 * `total` non-overlapping IPv4 destinations: 70% /32 hosts, the rest /16-/28 prefixes, in a
 * seeded random order, the last one being LAST (covers TARGET). Each prefix gets a /16 block
 * of its own; hosts are spread over the remaining blocks; so nothing overlaps.
 */
export function destinations(total: number, seed = 7): Dest[] {
  if (total < 2) throw new Error("need at least 2 destinations");
  const r = rng(seed);
  const hosts = Math.round(total * 0.7);
  const prefixes = total - hosts - 1;
  const blocks: number[] = [];
  for (let o1 = 1; o1 <= 223; o1++) {
    if (o1 === 127 || o1 === 10) continue;
    for (let o2 = 0; o2 < 256; o2++) {
      const b = (o1 << 8) | o2;
      if (!RESERVED_BLOCKS.has(b)) blocks.push(b);
    }
  }
  for (let i = blocks.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [blocks[i], blocks[j]] = [blocks[j] ?? 0, blocks[i] ?? 0];
  }
  if (prefixes >= blocks.length) throw new Error("too many prefixes");
  const out: Dest[] = [];
  for (let i = 0; i < prefixes; i++) {
    const len = 16 + Math.floor(r() * 13);
    const offset = Math.floor(r() * 2 ** (len - 16)) * 2 ** (32 - len);
    out.push({ addr: (blocks[i] ?? 0) * 65536 + offset, len });
  }
  const free = blocks.length - prefixes;
  const seen = new Set<number>();
  while (seen.size < hosts) {
    const b = blocks[prefixes + Math.floor(r() * free)] ?? 0;
    const a = b * 65536 + Math.floor(r() * 65536);
    if (seen.has(a)) continue;
    seen.add(a);
    out.push({ addr: a, len: 32 });
  }
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [out[i], out[j]] = [out[j] ?? LAST, out[i] ?? LAST];
  }
  out.push(LAST);
  return out;
}

// ---- rulesets ------------------------------------------------------------------------------

/** Entries per EgressAddressSet chunk: under the 10k limit, so a chunk can take one more. */
export const CHUNK = 9990;

type PolicyInput = z.input<typeof EgressPolicy>;
type AddressSetInput = z.input<typeof EgressAddressSet>;

/** The benchmarks' policy: Enforce, defaultAction Deny, one Allow rule to the address set
 *  NAME-dst on the ports the traffic tools use. No selector: every node. */
export function policyObject(name: string, nodeSelector: PolicyInput["spec"]["nodeSelector"] = {}): PolicyInput {
  return {
    apiVersion: "nftegress.io/v1alpha1",
    kind: "EgressPolicy",
    metadata: { name },
    spec: {
      nodeSelector,
      mode: "Enforce",
      defaultAction: "Deny",
      rules: [
        {
          name: "allow-list",
          action: "Allow",
          to: { addressSets: [`${name}-dst`] },
          ports: [
            { protocol: "TCP", port: IPERF_PORT, endPort: CONNECT_PORT },
            { protocol: "UDP", port: IPERF_PORT },
          ],
        },
      ],
    },
  };
}

/** The destinations as texts, split into address-set chunks of at most CHUNK (at least one). */
export function chunkTexts(dests: readonly Dest[]): string[][] {
  const texts = dests.map(destText);
  const chunks = Math.max(1, Math.ceil(texts.length / CHUNK));
  return Array.from({ length: chunks }, (_, c) => texts.slice(c * CHUNK, (c + 1) * CHUNK));
}

function yamlList(items: readonly string[]): string {
  return items.map((s) => `      - "${s}"\n`).join("");
}

/** One EgressPolicy (Enforce, defaultAction Deny, one Allow rule) and its address set split into
 *  chunks: file name -> YAML. The policy's rule references the set by its label. */
export function policyFiles(name: string, dests: readonly Dest[], opts: { extra?: readonly string[] } = {}): Map<string, string> {
  const files = new Map<string, string>();
  files.set(`${name}.yaml`, yaml.dump(policyObject(name)));
  const chunks = chunkTexts(dests);
  chunks.forEach((cidrs, c) => files.set(chunkFile(name, c), chunkYaml(name, c, cidrs, c === chunks.length - 1 ? (opts.extra ?? []) : [])));
  return files;
}

/** Object name of chunk c of the address set NAME-dst. */
export function chunkName(name: string, c: number): string {
  return `${name}-dst-${String(c).padStart(2, "0")}`;
}

export function chunkFile(name: string, c: number): string {
  return `${chunkName(name, c)}.yaml`;
}

/** A chunk as YAML text, written by hand (block list of quoted strings): the files the file-based
 *  benchmarks were measured with. */
export function chunkYaml(name: string, c: number, cidrs: readonly string[], extra: readonly string[] = []): string {
  return `apiVersion: nftegress.io/v1alpha1
kind: EgressAddressSet
metadata:
  name: ${chunkName(name, c)}
  labels: {${SET_LABEL}: ${name}-dst}
spec:
  cidrs:
${yamlList([...cidrs, ...extra])}`;
}

/** The same chunk as an API object. */
export function chunkObject(name: string, c: number, cidrs: readonly string[]): AddressSetInput {
  return { apiVersion: "nftegress.io/v1alpha1", kind: "EgressAddressSet", metadata: { name: chunkName(name, c), labels: { [SET_LABEL]: `${name}-dst` } }, spec: { cidrs: [...cidrs] } };
}

export function writeFiles(dir: string, files: ReadonlyMap<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of files) writeFileSync(join(dir, f), text);
}

export const RAW_TABLE = "rawbench";

/** The best hand-written raw ruleset: one interval set, established first, port before lookup. */
export function rawScript(dests: readonly Dest[]): string {
  const lines = [`table inet ${RAW_TABLE} {`, "  set allowed {", "    type ipv4_addr; flags interval;"];
  if (dests.length) lines.push(`    elements = { ${dests.map(destText).join(",\n      ")} }`);
  lines.push(
    "  }",
    "  chain output {",
    "    type filter hook output priority filter; policy accept;",
    "    ct state established,related accept",
    `    tcp dport ${IPERF_PORT}-${CONNECT_PORT} ip daddr @allowed accept`,
    `    udp dport ${IPERF_PORT} ip daddr @allowed accept`,
    "    drop",
    "  }",
    "}",
  );
  return `${lines.join("\n")}\n`;
}

export const NAIVE_TABLE = "naivebench";

/** The naive ruleset: one rule per destination, the allow-list first, then established, then drop. */
export function naiveScript(dests: readonly Dest[]): string {
  const lines = [`add table inet ${NAIVE_TABLE}`, `add chain inet ${NAIVE_TABLE} output { type filter hook output priority filter; policy accept; }`];
  // `th dport` (TCP and UDP alike, no protocol check): exactly one rule per destination.
  for (const d of dests) lines.push(`add rule inet ${NAIVE_TABLE} output ip daddr ${destText(d)} th dport ${IPERF_PORT}-${CONNECT_PORT} accept`);
  lines.push(`add rule inet ${NAIVE_TABLE} output ct state established,related accept`, `add rule inet ${NAIVE_TABLE} output drop`);
  return `${lines.join("\n")}\n`;
}

// ---- statistics ----------------------------------------------------------------------------

export function median(xs: readonly number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2;
}

/** Median of the per-repetition ratios a[i]/b[i] (each pair measured back to back). */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, i) => x / (b[i] ?? NaN)));
}

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function now(): number {
  return performance.timeOrigin + performance.now();
}

// ---- options, results, machine -------------------------------------------------------------

export interface Options {
  smoke: boolean;
  resultsDir: string;
  /** Extra `--key=value` options, for one-off runs at other sizes. */
  raw: Map<string, string>;
}

export function options(): Options {
  const raw = new Map<string, string>();
  for (const a of process.argv.slice(2)) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m?.[1]) throw new Error(`unknown argument ${a} (use --smoke, --results-dir=DIR, --key=value)`);
    raw.set(m[1], m[2] ?? "true");
  }
  return { smoke: raw.get("smoke") === "true", resultsDir: raw.get("results-dir") ?? join(ROOT, "bench", "results"), raw };
}

/** A numeric option, with its full and smoke defaults. */
export function num(o: Options, key: string, full: number, smoke: number): number {
  const v = o.raw.get(key);
  if (v === undefined) return o.smoke ? smoke : full;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${key} must be a number`);
  return n;
}

/** The options of the incremental benchmarks (file and API path). */
export function changeOptions(o: Options): { size: number; reps: number; QUIET_MS: number; IDLE_TIMEOUT_MS: number; BUDGET_MS: number } {
  return {
    size: num(o, "size", 100_000, 1000),
    reps: num(o, "reps", 7, 2),
    /** The agent counts as idle when it answers and applied nothing for this long. */
    QUIET_MS: num(o, "quiet-ms", 2000, 500),
    IDLE_TIMEOUT_MS: num(o, "idle-timeout-s", 900, 60) * 1000,
    /** Repetitions stop early (at least one runs) when the benchmark has run this long. */
    BUDGET_MS: num(o, "budget-s", 900, 60) * 1000,
  };
}

/** Read when this module loads, i.e. when the benchmark starts (machine() runs at the end). */
const LOAD_AT_START = loadavg()[0] ?? 0;

export function machine(): Record<string, string | number> {
  const first = (cmd: string, args: string[]) => sh(cmd, args).stdout.split("\n")[0]?.trim() ?? "";
  return {
    nproc: Number(first("nproc", [])),
    cpu: cpus()[0]?.model ?? "",
    kernel: first("uname", ["-r"]),
    nft: first("nft", ["--version"]),
    iperf3: first("iperf3", ["--version"]),
    node: process.version,
    loadavg_at_start: round(LOAD_AT_START, 2),
    loadavg_at_end: round(loadavg()[0] ?? 0, 2),
  };
}

/** Prints the figures as one JSON object and writes it to RESULTS/<name>.json. */
export function report(o: Options, name: string, figures: Record<string, number>, meta: Record<string, unknown>): void {
  const out = { ...figures, meta: { benchmark: name, date: new Date().toISOString(), smoke: o.smoke, machine: machine(), ...meta } };
  mkdirSync(o.resultsDir, { recursive: true });
  writeFileSync(join(o.resultsDir, `${name}.json`), `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---- cleanup -------------------------------------------------------------------------------

const cleanups: (() => void)[] = [];

/** Registers a synchronous cleanup that runs on exit (normal, error, Ctrl-C, SIGTERM). */
export function onExit(fn: () => void): void {
  cleanups.push(fn);
}

let exiting = false;
function runCleanups(): void {
  if (exiting) return;
  exiting = true;
  for (const fn of cleanups.reverse()) {
    try {
      fn();
    } catch {
      // keep cleaning
    }
  }
}
process.on("exit", runCleanups);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    process.exit(130);
  });
}

export function tempDir(tag: string): string {
  const d = mkdtempSync(join(tmpdir(), `nftegress-bench-${tag}-`));
  onExit(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A bare network namespace of our own (loopback up), deleted on exit. */
export function netns(tag: string): string {
  const name = `nfteb-${tag}-${process.pid}`;
  must("ip", ["netns", "add", name]);
  onExit(() => sh("ip", ["netns", "del", name]));
  must("ip", ["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
  return name;
}

/** A long-running process inside a namespace (the pid is the command's: ip netns exec execs it). */
export function spawnIn(ns: string, argv: string[]): ChildProcess {
  const child = spawn("ip", ["netns", "exec", ns, ...argv], { stdio: ["pipe", "pipe", "pipe"] });
  onExit(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });
  return child;
}

/** Runs to completion inside a namespace; returns stdout; throws on a non-zero exit. */
export function runIn(ns: string, argv: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawnIn(ns, argv);
    let out = "";
    let err = "";
    child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input ?? "");
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ").slice(0, 120)} in ${ns}: exit ${code}: ${err.trim().slice(0, 500)}`))));
  });
}

/** Wall time of a process run to completion, in ms; throws on a non-zero exit. */
export async function timed(argv: string[], input?: string): Promise<number> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error("empty command");
  const t0 = now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(" ").slice(0, 160)}: exit ${code}: ${err.trim().slice(0, 500)}`))));
  });
  return now() - t0;
}

export function nftSync(ns: string, script: string): void {
  must("ip", ["netns", "exec", ns, "nft", "-f", "-"], script);
}

export { ROOT };
export const NODE = process.execPath;
export const CLI = join(ROOT, "dist", "src", "cmd", "cli.js");
export const FLOWTOOL = join(ROOT, "dist", "bench", "flowtool.js");
export const spawnSyncText = (cmd: string, args: string[]): string => spawnSync(cmd, args, { encoding: "utf8" }).stdout ?? "";

// ---- the agent under test ----------------------------------------------------------------

/** The agent's apply histogram (count, sum in seconds), or null when it does not answer within
 *  a second (its event loop is busy). */
export async function agentApplies(port: number): Promise<{ sum: number; count: number; elements: number } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(1000) });
    const text = await res.text();
    const val = (name: string) => Number(text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))?.split(" ").pop() ?? NaN);
    return { sum: val("nftegress_apply_duration_seconds_sum"), count: val("nftegress_apply_duration_seconds_count"), elements: val("nftegress_ruleset_elements") };
  } catch {
    return null;
  }
}

/** Waits until the agent answers and has applied nothing for quietMs; returns the time (now())
 *  of its last apply, i.e. when it became idle. */
export async function waitAgentIdle(agent: { port: number; log(): string }, quietMs: number, maxMs: number): Promise<number> {
  const deadline = now() + maxMs;
  let last: { count: number; since: number } | null = null;
  for (;;) {
    const a = await agentApplies(agent.port);
    const t = now();
    if (a && last && a.count === last.count && t - last.since >= quietMs) return last.since;
    if (a && (!last || a.count !== last.count)) last = { count: a.count, since: t };
    if (!a) last = null;
    if (t > deadline) throw new Error(`agent still busy after ${maxMs} ms\nagent log:\n${agent.log().slice(-2000)}`);
    await sleep(100);
  }
}

// ---- the kernel's verdict on a new flow --------------------------------------------------

export type Verdict = "allowed" | "denied";

/** What the prober answers: when the verdict was reached (now() clock), after how many sends. */
export interface ProbeResult {
  t: number;
  attempts: number;
  ok: boolean;
  error?: string;
}

export interface Prober {
  /** Sends one UDP datagram to addr:port from a fresh socket (a new flow) every millisecond
   *  until the kernel's verdict is `want` (sent: allowed; EPERM: an output drop); rejects when
   *  it is not within timeoutMs. */
  until(want: Verdict, addr: string, port: number, timeoutMs: number): Promise<ProbeResult>;
}

/** Starts `flowtool probe` in a namespace (killed on exit). `context` is appended to errors
 *  (the agent's log). */
export async function startProber(ns: string, context: () => string = () => ""): Promise<Prober> {
  const child = spawnIn(ns, [NODE, FLOWTOOL, "probe"]);
  const waiting: { resolve(line: string): void; reject(e: Error): void }[] = [];
  createInterface({ input: child.stdout ?? process.stdin }).on("line", (l) => waiting.shift()?.resolve(l));
  child.once("exit", (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`prober exited (${code})`));
  });
  const nextLine = () => new Promise<string>((resolve, reject) => waiting.push({ resolve, reject }));
  await nextLine(); // "ready"
  return {
    async until(want, addr, port, timeoutMs) {
      const line = nextLine();
      child.stdin?.write(`${want} ${addr} ${port} ${timeoutMs}\n`);
      const r = JSON.parse(await line) as ProbeResult;
      if (!r.ok) throw new Error(`probe ${want} ${addr}:${port}: ${r.error ?? "failed"}\n${context().slice(-2000)}`);
      return r;
    },
  };
}

/** How one change of the agent's input reached the kernel. */
export interface ChangeTimes {
  /** now() just before `write` was called. */
  start: number;
  /** The prober saw the new verdict. */
  enforced: number;
  /** The agent was idle again (its last apply in the window). */
  idleAt: number;
  /** The agent's own apply time in the window (nftegress_apply_duration_seconds, summed over the
   *  change and any follow-up no-op apply), ms; NaN when unknown. */
  agentMs: number;
}

export interface ChangeSetup {
  prober: Prober;
  agent: { port: number; log(): string };
  /** The destination the change allows (adding) or denies again (removing). */
  addr: string;
  port: number;
  quietMs: number;
  timeoutMs: number;
}

/**
 * One change: checks the verdict before it (must hold at the first send), calls `write` (the
 * change of the agent's input), waits for the kernel's verdict to flip, then for the agent to
 * be idle again.
 */
export async function timeChange(s: ChangeSetup, adding: boolean, write: () => Promise<void> | void): Promise<ChangeTimes> {
  const before: Verdict = adding ? "denied" : "allowed";
  if ((await s.prober.until(before, s.addr, s.port, 5000)).attempts !== 1) throw new Error(`state before the change is not settled: ${s.addr} not ${before} at once`);
  const h0 = await agentApplies(s.agent.port);
  const start = now();
  await write();
  const r = await s.prober.until(adding ? "allowed" : "denied", s.addr, s.port, s.timeoutMs);
  // Let the agent finish (revocation, a follow-up reconcile) before the next step.
  const idleAt = await waitAgentIdle(s.agent, s.quietMs, s.timeoutMs);
  const h1 = await agentApplies(s.agent.port);
  const agentMs = h0 && h1 && h1.count > h0.count ? (h1.sum - h0.sum) * 1000 : NaN;
  return { start, enforced: r.t, idleAt, agentMs };
}

/** CPU seconds of a process (user + system), itself and with its reaped children (nft). */
export function cpuSeconds(pid: number): { self: number; withChildren: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  // After the comm field: state is f[0], utime f[11], stime f[12], cutime f[13], cstime f[14].
  const tick = CLK_TCK;
  const self = ((f[11] ?? NaN) + (f[12] ?? NaN)) / tick;
  return { self, withChildren: self + ((f[13] ?? NaN) + (f[14] ?? NaN)) / tick };
}

const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout?.trim() || 100);

/** Resident and peak resident memory of a process, MiB. */
export function memoryMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}

/** `--state-dir` for a CLI command that keeps state (apply, agent), when this build has the
 *  option: the state goes to our temp dir, not the host's /run/nftegress. */
export function stateDirArgs(dir: string, command: "agent" | "apply" = "agent"): string[] {
  return must(NODE, [CLI, command, "--help"]).includes("--state-dir") ? ["--state-dir", join(dir, "state")] : [];
}

/** Runs `start` with extra NODE_OPTIONS (for the processes it spawns), restoring them after. */
export async function withNodeOptions<T>(extra: string, start: () => Promise<T>): Promise<T> {
  const before = process.env["NODE_OPTIONS"];
  process.env["NODE_OPTIONS"] = `${before ?? ""} ${extra}`.trim();
  try {
    return await start();
  } finally {
    if (before === undefined) delete process.env["NODE_OPTIONS"];
    else process.env["NODE_OPTIONS"] = before;
  }
}

/** Spawn options for an agent whose heap can be inspected later: the inspector is not active
 *  (no cost) until inspectAfterGc() sends SIGUSR1, and then listens on a random local port. */
export function withInspectablePort<T>(start: () => Promise<T>): Promise<T> {
  return withNodeOptions("--inspect-port=127.0.0.1:0", start);
}

/** Opens the agent's inspector (SIGUSR1), forces a full garbage collection, and returns its
 *  RSS and V8 heap in use afterwards, MiB: what of its memory is live, not garbage not yet
 *  collected (an idle process seldom collects). */
export async function inspectAfterGc(agent: { child: ChildProcess; log(): string }): Promise<{ rss: number; heapUsed: number }> {
  const pid = agent.child.pid ?? 0;
  agent.child.kill("SIGUSR1");
  let url = "";
  for (let i = 0; i < 100 && !url; i++) {
    url = /Debugger listening on (ws:\/\/\S+)/.exec(agent.log())?.[1] ?? "";
    if (!url) await sleep(50);
  }
  if (!url) throw new Error("the agent's inspector did not start");
  const ws = new WebSocket(url);
  const pending = new Map<number, (v: unknown) => void>();
  ws.onmessage = (m: MessageEvent) => {
    const d = JSON.parse(String(m.data)) as { id?: number };
    if (d.id !== undefined) pending.get(d.id)?.(d);
  };
  let id = 0;
  const call = (method: string, params: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      pending.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error("cannot connect to the agent's inspector"));
  });
  try {
    await call("HeapProfiler.collectGarbage");
    await sleep(500);
    const r = (await call("Runtime.evaluate", { expression: "process.memoryUsage().heapUsed" })) as { result?: { result?: { value?: number } } };
    return { rss: memoryMiB(pid).rss, heapUsed: (r.result?.result?.value ?? NaN) / 2 ** 20 };
  } finally {
    ws.close();
  }
}

// ---- memory cgroup ---------------------------------------------------------------------------

export interface MemoryCgroup {
  dir: string;
  limitMiB: number;
  /** A launcher for startCommand(): enters the cgroup, then execs the command (same pid). */
  launcher: string[];
  /** The kernel's figures for the group: peak usage and how often it hit the limit or killed. */
  stats(): { peakMiB: number; oomKills: number; limitHits: number };
}

/** A memory cgroup with a hard limit, as a container's `resources.limits.memory` gives a pod
 *  (cgroup v2 where its memory controller is mounted, else v1), removed on exit. Node.js sizes
 *  its heap from this limit at start-up, as it does in a pod. */
export function memoryCgroup(tag: string, limitMiB: number): MemoryCgroup {
  const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers") && readFileSync("/sys/fs/cgroup/cgroup.controllers", "utf8").split(/\s+/).includes("memory");
  const root = v2 ? "/sys/fs/cgroup" : "/sys/fs/cgroup/memory";
  if (!v2 && !existsSync(join(root, "memory.limit_in_bytes"))) throw new Error("no memory cgroup controller (neither cgroup v2 with memory nor v1 /sys/fs/cgroup/memory): run with --memory-limit=0");
  const dir = join(root, `nftegress-bench-${tag}-${process.pid}`);
  mkdirSync(dir);
  onExit(() => {
    for (const pid of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean)) sh("kill", ["-9", pid]);
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(dir);
        return;
      } catch {
        spawnSync("sleep", ["0.1"]);
      }
    }
  });
  const bytes = String(limitMiB * 1024 * 1024);
  writeFileSync(join(dir, v2 ? "memory.max" : "memory.limit_in_bytes"), bytes);
  if (v2 && existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  const field = (text: string, key: string) => Number(new RegExp(`^${key} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
  return {
    dir,
    limitMiB,
    launcher: ["sh", "-c", 'echo $$ > "$0" && exec "$@"', join(dir, "cgroup.procs")],
    stats() {
      if (v2) {
        const events = read("memory.events");
        return { peakMiB: existsSync(join(dir, "memory.peak")) ? Number(read("memory.peak")) / 2 ** 20 : NaN, oomKills: field(events, "oom_kill"), limitHits: field(events, "max") };
      }
      return { peakMiB: Number(read("memory.max_usage_in_bytes")) / 2 ** 20, oomKills: field(read("memory.oom_control"), "oom_kill"), limitHits: Number(read("memory.failcnt")) };
    },
  };
}

/** A component's memory limit in the chart's default values (<component>.resources.limits.memory). */
export function chartMemoryLimit(component: "controller" | "agent"): string {
  const limits = z.object({ resources: z.object({ limits: z.object({ memory: z.string() }) }) });
  const values = z.object({ controller: limits, agent: limits });
  return values.parse(yaml.load(readFileSync(join(ROOT, "charts", "nftegress", "values.yaml"), "utf8")))[component].resources.limits.memory;
}

/** The --memory-limit option (a Kubernetes quantity, 0 for none), default the chart's limit
 *  for the component: the memory cgroup to run it in, or null. */
export function memoryLimitOption(o: Options, component: "controller" | "agent"): MemoryCgroup | null {
  const mib = quantityMiB(o.raw.get("memory-limit") ?? chartMemoryLimit(component));
  return mib > 0 ? memoryCgroup(component, mib) : null;
}

/** How the component ran, for a benchmark's meta. */
export function memoryLimitMeta(cg: MemoryCgroup | null): string {
  return cg ? `a memory cgroup with a hard limit of ${cg.limitMiB} MiB (the chart's limit unless --memory-limit), entered before the process starts, so Node.js sizes its heap from it and its nft children count too, as in the pod; ${cg.stats().limitHits} allocations hit the limit` : "none (--memory-limit=0)";
}

/** A memory quantity as Kubernetes writes it (384Mi, 1Gi, 500M, bytes) in MiB. */
export function quantityMiB(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?$/.exec(q.trim());
  if (!m) throw new Error(`not a memory quantity: ${q}`);
  const unit: Record<string, number> = { "": 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, K: 1e3, M: 1e6, G: 1e9 };
  return (Number(m[1]) * (unit[m[2] ?? ""] ?? 1)) / 2 ** 20;
}
