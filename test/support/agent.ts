// Runs the agent or the controller as a child process, with its log captured.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { CLI } from "./exec.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Children still running when this process exits are killed, so nothing outlives a test. */
const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

export interface AgentProcess {
  child: ChildProcess;
  port: number;
  log(): string;
  get(path: string): Promise<{ status: number; text: string }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
}

export function startAgent(args: string[], launcher: readonly string[] = []): Promise<AgentProcess> {
  return startCommand("agent", args, launcher);
}

export function startController(args: string[], launcher: readonly string[] = []): Promise<AgentProcess> {
  return startCommand("controller", args, launcher);
}

/** Runs a long-lived CLI command with its own metrics port and captured log. `launcher`, when
 *  given, is a command that execs its arguments (the process keeps its pid), e.g. one that
 *  enters a cgroup first. */
export async function startCommand(command: string, args: string[], launcher: readonly string[] = []): Promise<AgentProcess> {
  const port = await freePort();
  const argv = [...launcher, process.execPath, CLI, command, "--metrics-address", `127.0.0.1:${port}`, ...args];
  const child = spawn(argv[0] ?? process.execPath, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const agent: AgentProcess = {
    child,
    port,
    log: () => output,
    async get(path: string) {
      const res = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: res.status, text: await res.text() };
    },
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      const started = Date.now();
      if (child.exitCode !== null) return { code: child.exitCode, ms: 0 };
      const done = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
      child.kill(signal);
      const code = await done;
      return { code, ms: Date.now() - started };
    },
  };
  return agent;
}

export async function eventually<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let last: T | undefined;
  for (;;) {
    try {
      last = await fn();
      if (ok(last)) return last;
    } catch {
      // retry
    }
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms (last: ${JSON.stringify(last)?.slice(0, 300)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
