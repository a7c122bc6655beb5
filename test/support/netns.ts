// A throwaway "node" + "world" network namespace pair joined by a veth, for tests that judge
// real packets. The world holds the documentation-range test addresses and listeners; the
// node routes only those ranges to it, so nothing can leave the pair. Always deleted.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ROOT, must, run, sh } from "./exec.js";

export const WORLD_V4 = ["192.0.2.10", "192.0.2.20", "192.0.2.30", "192.0.2.53", "192.0.2.123", "198.51.100.40", "198.51.100.41", "203.0.113.5", "203.0.113.77"];
export const WORLD_V6 = ["2001:db8:1::10", "2001:db8:1::20", "2001:db8:2::10", "2001:db8:3::10"];
export const TCP_PORTS = [22, 53, 80, 443, 8080, 9418];
export const UDP_PORTS = [53, 123, 4789];

export interface Topology {
  node: string;
  world: string;
  close(): Promise<void>;
}

const live = new Set<Topology>();
process.on("exit", () => {
  for (const t of live) {
    sh("ip", ["netns", "del", t.node]);
    sh("ip", ["netns", "del", t.world]);
  }
});

function ns(name: string, ...args: string[]): void {
  must("ip", ["netns", "exec", name, ...args]);
}

export async function createTopology(tag = "t"): Promise<Topology> {
  const id = `${tag}${randomBytes(3).toString("hex")}`.slice(0, 9);
  const node = `nfte-${id}-n`;
  const world = `nfte-${id}-w`;
  let listener: ChildProcess | null = null;
  const topo: Topology = {
    node,
    world,
    async close() {
      live.delete(topo);
      listener?.kill("SIGKILL");
      sh("ip", ["netns", "del", node]);
      sh("ip", ["netns", "del", world]);
    },
  };
  live.add(topo);
  try {
    must("ip", ["netns", "add", node]);
    must("ip", ["netns", "add", world]);
    must("ip", ["link", "add", "veth-n", "netns", node, "type", "veth", "peer", "name", "veth-w", "netns", world]);
    for (const n of [node, world]) {
      ns(n, "ip", "link", "set", "lo", "up");
      ns(n, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0");
    }
    ns(node, "ip", "addr", "add", "192.0.2.1/24", "dev", "veth-n");
    ns(node, "ip", "addr", "add", "2001:db8::1/64", "dev", "veth-n", "nodad");
    ns(node, "ip", "link", "set", "veth-n", "up");
    ns(world, "ip", "addr", "add", "192.0.2.254/24", "dev", "veth-w");
    ns(world, "ip", "addr", "add", "2001:db8::2/64", "dev", "veth-w", "nodad");
    ns(world, "ip", "link", "set", "veth-w", "up");
    for (const a of WORLD_V4) ns(world, "ip", "addr", "add", `${a}/32`, "dev", "lo");
    for (const a of WORLD_V6) ns(world, "ip", "addr", "add", `${a}/128`, "dev", "lo");
    for (const r of ["198.51.100.0/24", "203.0.113.0/24"]) ns(node, "ip", "route", "add", r, "via", "192.0.2.254");
    for (const r of ["2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48"]) ns(node, "ip", "-6", "route", "add", r, "via", "2001:db8::2");
    listener = spawn("ip", ["netns", "exec", world, process.execPath, join(ROOT, "dist", "test", "support", "listener.js"), `--tcp=${TCP_PORTS.join(",")}`, `--udp=${UDP_PORTS.join(",")}`, `--addrs=${[...WORLD_V4, ...WORLD_V6].join(",")}`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve, reject) => {
      listener?.stdout?.once("data", () => resolve());
      listener?.once("exit", (c) => reject(new Error(`listener exited ${c}`)));
    });
    // Wait until the node can reach the world (IPv6 neighbour discovery included).
    for (let i = 0; i < 50; i++) {
      if ((await probeTcp(topo, "192.0.2.10", 443, { timeoutMs: 500 })) === "connected" && (await probeTcp(topo, "2001:db8:1::10", 443, { timeoutMs: 500 })) === "connected") break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return topo;
  } catch (e) {
    await topo.close();
    throw e;
  }
}

// "eperm": the kernel refused the send itself (a local output drop makes sendmsg fail).
export type ProbeResult = "connected" | "timeout" | "refused" | "unreachable" | "eperm" | "error";

export interface ProbeOptions {
  timeoutMs?: number;
  uid?: number;
  /** Absolute cgroup v2 directory the probing process joins before it connects. */
  cgroup?: string;
  /** false: a connect is enough (any listener, not only the world's greeting one). */
  greeting?: boolean;
}

function asUser(uid: number | undefined, argv: string[]): string[] {
  return uid === undefined ? argv : ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", ...argv];
}

function classify(code: number | null, stderr: string): ProbeResult {
  if (code === 0) return "connected";
  // timeout -s KILL signals its whole process group, itself included: no exit code then.
  if (code === null || code === 124 || code === 137) return "timeout";
  if (/refused/i.test(stderr)) return "refused";
  if (/not permitted/i.test(stderr)) return "eperm";
  if (/unreachable|No route|Permission denied/i.test(stderr)) return "unreachable";
  return "error";
}

/** Opens a TCP connection from the node namespace; reads the listener's greeting. */
export async function probeTcp(t: Topology, addr: string, port: number, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const secs = ((opts.timeoutMs ?? 1500) / 1000).toFixed(2);
  const join = opts.cgroup ? `echo $$ > ${opts.cgroup}/cgroup.procs && ` : "";
  const read = opts.greeting === false ? "" : ` && read -t 2 line <&3 && [ "$line" = ok ]`;
  const script = `${join}exec 3<>/dev/tcp/${addr}/${port}${read}`;
  // nsenter keeps the host's mounts (ip netns exec remounts /sys, hiding the cgroup tree).
  const r = await run("nsenter", [`--net=/run/netns/${t.node}`, "--", ...asUser(opts.uid, ["timeout", "-s", "KILL", secs, "bash", "-c", script])]);
  return classify(r.code, r.stderr);
}

/** Sends a UDP datagram from the node namespace and waits for the echo. */
export async function probeUdp(t: Topology, addr: string, port: number, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const secs = ((opts.timeoutMs ?? 1500) / 1000).toFixed(2);
  // bash reads a datagram socket one byte per recv, so only the first byte of the echo arrives.
  const script = `exec 3<>/dev/udp/${addr}/${port} && echo hi >&3 && read -n 1 -t ${secs} c <&3 && [ "$c" = o ]`;
  const r = await run("ip", ["netns", "exec", t.node, ...asUser(opts.uid, ["timeout", "-s", "KILL", String(Number(secs) + 1), "bash", "-c", script])]);
  if ((r.code === 1 || (r.code ?? 0) > 128) && r.stderr === "") return "timeout";
  return classify(r.code, r.stderr);
}

/** `nft list ruleset` of a namespace: used to prove a ruleset is byte-for-byte unchanged. */
export function ruleset(nsName: string): string {
  return must("ip", ["netns", "exec", nsName, "nft", "list", "ruleset"]);
}

export function nftIn(nsName: string, script: string): void {
  must("ip", ["netns", "exec", nsName, "nft", "-f", "-"], script);
}

export const PASSWD_LINE = "appuser:x:4242:4242:test user:/nonexistent:/usr/sbin/nologin\n";
