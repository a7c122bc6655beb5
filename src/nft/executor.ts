// The one interface behind which every netfilter side effect lives, and its real
// implementation: `nft`, optionally inside a named network namespace. Only this module starts
// processes (nft, and flock for the table lock).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, constants, openSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FAMILY, TABLE } from "./transaction.js";
import { NftError, NftNotFoundError, NftTransactionError, NftUnavailableError, NftUnreadableError, firstLine } from "./errors.js";
import { tableDormant } from "./listing.js";

/** `nft -j` output: a list of one-key objects, loosely typed, parsed further by readers. */
export interface NftJson {
  nftables: Record<string, unknown>[];
}

/** Checks the shape without copying (listings are read every few seconds). */
export function asNftJson(v: unknown): NftJson {
  const list: unknown = typeof v === "object" && v !== null && "nftables" in v ? v.nftables : undefined;
  if (!Array.isArray(list) || !list.every((i) => typeof i === "object" && i !== null && !Array.isArray(i))) throw new Error("not an nft JSON listing");
  return { nftables: list as Record<string, unknown>[] };
}

export interface NftExecutor {
  /**
   * Applies a script as one transaction. nft reads it from a complete, unnamed file (never a
   * pipe a dying writer could cut short). Throws NftTransactionError, nothing applied.
   */
  apply(script: string): Promise<void>;
  /** Validates a script against the kernel without applying it (`nft --check`, same file). */
  check(script: string): Promise<void>;
  /**
   * `nft -j -t list ruleset inet`: every inet table's chains, rules, counters and set declarations, without
   * the elements of named sets, so it stays cheap however large our sets are (nft 1.0.6 lists
   * every set element for any listing of a table, chain or counter, terse or not).
   */
  listRuleset(): Promise<NftJson>;
  /** `nft -j [-t] list table inet nftegress`; null when the table does not exist. Slow with large sets. */
  listTable(terse: boolean): Promise<NftJson | null>;
  /** `nft -j list set inet nftegress NAME`: the dynamic sets' counters, and the element audit (one set at a time, about 4 ms per 1,000 elements). */
  listSet(name: string): Promise<NftJson | null>;
  /** `nft -j list sets table inet nftegress`: every set of our table with its elements, in one
   *  process (the element audit of many small sets); null when the table does not exist. */
  listSets(): Promise<NftJson | null>;
  /** Whether our table has the dormant flag (null: no table). Read from the terse text listing of the ruleset. */
  isDormant(): Promise<boolean | null>;
}

export interface ExecutorOptions {
  netns?: string | undefined;
  nftPath?: string;
  timeoutMs?: number;
  /**
   * The table's lock (src/host/lock.ts), while held: every nft transaction inherits the open
   * lock file, so a transaction we started keeps the table locked until nft exits, even when
   * we are killed first (the next apply then never reads the table while it is committing).
   */
  lock?: { heldFd(): number | null };
}

interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  stdin?: string | undefined;
  /** Open files the child gets as fds 3, 4, ... */
  fds?: readonly number[];
  /** 0: no time limit. */
  timeoutMs: number;
}

function run(argv: string[], opts: RunOptions): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) return reject(new Error("empty command"));
    const child = spawn(cmd, args, { stdio: [opts.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe", ...(opts.fds ?? [])] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = opts.timeoutMs > 0 ? setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs) : undefined;
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    if (child.stdin) {
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts.stdin);
    }
  });
}

/**
 * The whole script in a file nobody else can open or see: created exclusively with mode 0600
 * and unlinked at once (a kill -9 leaves nothing behind), then written completely before nft
 * starts. nft reads it as /dev/fd/3, so it gets all of it or, when we die first, is never started.
 */
function scriptFile(script: string): number {
  const path = join(tmpdir(), `nftegress-${process.pid}-${randomBytes(8).toString("hex")}.nft`);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    unlinkSync(path);
    writeFileSync(fd, script);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** flock(1)'s exit code when the lock stays busy (-n, or -w ran out). */
const FLOCK_BUSY = 75;

/**
 * Takes the flock(2) lock of an open file with `flock(1)`, given the file as its fd 3: the lock
 * belongs to the open file, so it stays ours after flock(1) exits and goes when the last
 * process holding the file closes it or dies (kill -9 included). waitSec 0: do not wait;
 * null: wait as long as it takes. Resolves false when the lock is still busy.
 */
export async function flockFile(fd: number, waitSec: number | null, flockPath = "flock"): Promise<boolean> {
  const wait = waitSec === null ? [] : waitSec === 0 ? ["-n"] : ["-w", String(waitSec)];
  let res: ProcessResult;
  try {
    res = await run([flockPath, "-x", "-E", String(FLOCK_BUSY), ...wait, "3"], { fds: [fd], timeoutMs: waitSec === null ? 0 : waitSec * 1000 + 30_000 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === "ENOENT" ? `${flockPath} is not installed (util-linux)` : `flock: ${String(e)}`);
  }
  if (res.code === 0) return true;
  if (res.code === FLOCK_BUSY) return false;
  throw new Error(`flock: ${firstLine(res.stderr) || `exit code ${res.code}`}`);
}

export class RealNftExecutor implements NftExecutor {
  private readonly nft: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: ExecutorOptions = {}) {
    this.nft = opts.nftPath ?? "nft";
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  // nsenter switches only the network namespace. `ip netns exec` would also remount /sys,
  // where nft then cannot find the cgroup v2 hierarchy that `socket cgroupv2` rules resolve.
  private argv(cmd: string, args: string[]): string[] {
    return this.opts.netns ? ["nsenter", `--net=/run/netns/${this.opts.netns}`, "--", cmd, ...args] : [cmd, ...args];
  }

  private async exec(cmd: string, args: string[], fds: readonly number[] = []): Promise<ProcessResult> {
    try {
      return await run(this.argv(cmd, args), { stdin: "", fds, timeoutMs: this.timeoutMs });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const what = code === "ENOENT" ? `${cmd} is not installed (or nsenter, for --netns)` : String(e);
      throw new NftUnavailableError(what, "", null);
    }
  }

  private fail(res: ProcessResult, what: string): never {
    const line = firstLine(res.stderr) || `exit code ${res.code}`;
    if (/nsenter: (cannot open|reassociate)/.test(res.stderr)) {
      throw new NftUnavailableError(`network namespace ${this.opts.netns ?? ""}: ${line}`, res.stderr, res.code);
    }
    if (/Operation not permitted/.test(res.stderr)) {
      throw new NftUnavailableError(`${what}: operation not permitted (needs root or CAP_NET_ADMIN)`, res.stderr, res.code);
    }
    if (/No such file or directory/.test(res.stderr)) throw new NftNotFoundError(`${what}: ${line}`, res.stderr, res.code);
    throw new NftTransactionError(`${what}: ${nftMessage(res.stderr) || line}`, res.stderr, res.code);
  }

  /** nft -f /dev/fd/3 on the complete script file (nsenter keeps the fds it is given). */
  private async runScript(args: string[], script: string, lock: boolean): Promise<ProcessResult> {
    let fd: number;
    try {
      fd = scriptFile(script);
    } catch (e) {
      throw new NftUnavailableError(`cannot write the transaction to a file in ${tmpdir()}: ${e instanceof Error ? e.message : String(e)}`, "", null);
    }
    try {
      const held = lock ? this.opts.lock?.heldFd() : null;
      return await this.exec(this.nft, [...args, "-f", "/dev/fd/3"], held === null || held === undefined ? [fd] : [fd, held]);
    } finally {
      closeSync(fd);
    }
  }

  async apply(script: string): Promise<void> {
    const res = await this.runScript([], script, true);
    if (res.code !== 0) this.fail(res, "nft rejected the transaction");
  }

  async check(script: string): Promise<void> {
    const res = await this.runScript(["--check"], script, false);
    if (res.code !== 0) this.fail(res, "nft --check rejected the ruleset");
  }

  private async listJson(args: string[]): Promise<NftJson | null> {
    const res = await this.exec(this.nft, ["-j", ...args]);
    if (res.code !== 0) {
      try {
        this.fail(res, `nft ${args.join(" ")}`);
      } catch (e) {
        if (e instanceof NftNotFoundError) return null;
        throw e;
      }
    }
    try {
      return asNftJson(JSON.parse(res.stdout));
    } catch {
      // nft 1.0.6 prints invalid JSON for table flags, e.g. a dormant table.
      throw new NftUnreadableError(`nft -j ${args.join(" ")}: unreadable JSON output (is the table dormant?)`, res.stdout.slice(0, 200), res.code);
    }
  }

  async isDormant(): Promise<boolean | null> {
    const res = await this.exec(this.nft, ["-t", "list", "ruleset", FAMILY]);
    if (res.code !== 0) this.fail(res, "nft -t list ruleset");
    return tableDormant(res.stdout, FAMILY, TABLE);
  }

  async listRuleset(): Promise<NftJson> {
    return (await this.listJson(["-t", "list", "ruleset", FAMILY])) ?? { nftables: [] };
  }

  listTable(terse: boolean): Promise<NftJson | null> {
    return this.listJson([...(terse ? ["-t"] : []), "list", "table", FAMILY, TABLE]);
  }

  listSet(name: string): Promise<NftJson | null> {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new NftError(`invalid set name ${name}`, "", null);
    return this.listJson(["list", "set", FAMILY, TABLE, name]);
  }

  listSets(): Promise<NftJson | null> {
    return this.listJson(["list", "sets", "table", FAMILY, TABLE]);
  }

}

/** nft prints "file:line:col: Error: message" followed by the offending line; keep the message. */
export function nftMessage(stderr: string): string {
  const m = /Error: ([^\n]+)/.exec(stderr);
  if (!m) return "";
  const lines = stderr.split("\n");
  const idx = lines.findIndex((l) => l.includes("Error:"));
  const context = lines[idx + 1]?.trim();
  return context ? `${m[1]} (at: ${context.slice(0, 160)})` : (m[1] ?? "");
}
