// Long-lived flows from the node namespace, to judge whether an established connection still
// passes: each flow sends a ping every 100 ms and logs the time of every answer. TCP gets
// "pong" from the world's listener, UDP its "ok" echo. Clients are bash (/dev/tcp, /dev/udp),
// so they can run as any uid and gid (setpriv) without reading root's Node.js installation.
import { spawn, type ChildProcess } from "node:child_process";
import type { Topology } from "./netns.js";

export interface FlowSpec {
  protocol: "tcp" | "udp";
  addr: string;
  port: number;
  /** Runs the client as this uid and gid (no supplementary groups). */
  uid?: number;
}

export interface Flow {
  spec: FlowSpec;
  /** Times (Date.now()) at which an answer arrived. */
  answers: number[];
  answersAfter(t: number): number;
  close(): void;
}

export function describeFlow(s: FlowSpec): string {
  return `${s.protocol} ${s.addr}:${s.port}${s.uid !== undefined ? ` as uid ${s.uid}` : ""}`;
}

function script(s: FlowSpec): string {
  if (s.protocol === "tcp") {
    return `exec 3<>/dev/tcp/${s.addr}/${s.port} || exit 1; read -t 2 l <&3 || exit 1; while sleep 0.1; do echo ping >&3 || exit 1; read -t 0.5 r <&3 && [ "$r" = pong ] && echo answer; done`;
  }
  // bash reads a datagram socket one byte per recv: the first byte of each echo is enough.
  return `exec 3<>/dev/udp/${s.addr}/${s.port} || exit 1; while sleep 0.1; do echo ping >&3 2>/dev/null; read -n 1 -t 0.5 c <&3 && [ "$c" = o ] && echo answer; done`;
}

export function openFlow(t: Topology, spec: FlowSpec): Flow {
  const user = spec.uid === undefined ? [] : ["setpriv", `--reuid=${spec.uid}`, `--regid=${spec.uid}`, "--clear-groups"];
  const child: ChildProcess = spawn("nsenter", [`--net=/run/netns/${t.node}`, "--", ...user, "bash", "-c", script(spec)], { stdio: ["ignore", "pipe", "ignore"] });
  const flow: Flow = {
    spec,
    answers: [],
    answersAfter: (at) => flow.answers.filter((x) => x > at).length,
    close: () => child.kill("SIGKILL"),
  };
  let buf = "";
  child.stdout?.on("data", (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split("\n");
    buf = lines.pop() ?? "";
    for (const l of lines) if (l === "answer") flow.answers.push(Date.now());
  });
  return flow;
}

/** Waits until every flow has had an answer; throws naming the flows that never got one. */
export async function waitUp(flows: readonly Flow[], timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (flows.every((f) => f.answers.length > 0)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  const down = flows.filter((f) => f.answers.length === 0).map((f) => describeFlow(f.spec));
  throw new Error(`flows never answered: ${down.join(", ")}`);
}
