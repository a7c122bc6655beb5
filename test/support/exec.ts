// Process helpers for tests: run a command and capture its output and exit code.
import { spawn, spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CLI = join(ROOT, "dist", "src", "cmd", "cli.js");

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: string[], input?: string): Result {
  const r = spawnSync(cmd, args, { encoding: "utf8", input: input ?? "", maxBuffer: 256 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

export function must(cmd: string, args: string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** The directory a hack/ provider script (node.sh, kube-assets.sh, helm.sh) prints last. */
export function providedDir(script: string, args: string[] = []): string {
  const dir = must(join(ROOT, "hack", script), args).trim().split("\n").pop();
  if (!dir) throw new Error(`hack/${script} printed nothing`);
  return dir;
}

export function run(cmd: string, args: string[], input?: string, env?: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...(env ? { env } : {}) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    // A child that exits without reading its input makes the write fail with EPIPE: harmless.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
  });
}

/** Runs the built CLI. */
export function cli(args: string[]): Promise<Result> {
  return run(process.execPath, [CLI, ...args]);
}
