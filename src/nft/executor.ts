// The one interface behind which every netfilter side effect lives, and its real
// implementation: `nft` (and `conntrack` for revocation), optionally inside a named network
// namespace. Only this module starts processes that touch the kernel.
import { spawn } from "node:child_process";
import { FAMILY, TABLE } from "./transaction.js";
import { NftError, NftNotFoundError, NftTransactionError, NftUnavailableError, NftUnreadableError, firstLine } from "./errors.js";
import type { Cidr } from "../net/cidr.js";
import { formatAddress, formatCidr, formatMask } from "../net/cidr.js";
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
  /** Applies a script as one transaction (`nft -f -`). Throws NftTransactionError, nothing applied. */
  apply(script: string): Promise<void>;
  /** Validates a script against the kernel without applying it (`nft --check -f -`). */
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
  /** Deletes conntrack entries whose original destination lies in one of the prefixes. */
  deleteFlows(to: readonly Cidr[]): Promise<number>;
  /** Whether our table has the dormant flag (null: no table). Read from the terse text listing of the ruleset. */
  isDormant(): Promise<boolean | null>;
}

export interface ExecutorOptions {
  netns?: string | undefined;
  nftPath?: string;
  conntrackPath?: string;
  timeoutMs?: number;
}

interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], stdin: string | undefined, timeoutMs: number): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) return reject(new Error("empty command"));
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(stdin ?? "");
  });
}

export class RealNftExecutor implements NftExecutor {
  private readonly nft: string;
  private readonly conntrack: string;
  private readonly timeoutMs: number;

  constructor(private readonly opts: ExecutorOptions = {}) {
    this.nft = opts.nftPath ?? "nft";
    this.conntrack = opts.conntrackPath ?? "conntrack";
    this.timeoutMs = opts.timeoutMs ?? 120_000;
  }

  // nsenter switches only the network namespace. `ip netns exec` would also remount /sys,
  // where nft then cannot find the cgroup v2 hierarchy that `socket cgroupv2` rules resolve.
  private argv(cmd: string, args: string[]): string[] {
    return this.opts.netns ? ["nsenter", `--net=/run/netns/${this.opts.netns}`, "--", cmd, ...args] : [cmd, ...args];
  }

  private async exec(cmd: string, args: string[], stdin?: string): Promise<ProcessResult> {
    try {
      return await run(this.argv(cmd, args), stdin, this.timeoutMs);
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

  async apply(script: string): Promise<void> {
    const res = await this.exec(this.nft, ["-f", "-"], script);
    if (res.code !== 0) this.fail(res, "nft rejected the transaction");
  }

  async check(script: string): Promise<void> {
    const res = await this.exec(this.nft, ["--check", "-f", "-"], script);
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

  async deleteFlows(to: readonly Cidr[]): Promise<number> {
    let deleted = 0;
    for (const c of to) {
      const fam = c.family === 4 ? "ipv4" : "ipv6";
      const args = ["-D", "-f", fam, "--orig-dst", formatAddress(c.family, c.addr), "--mask-dst", formatMask(c.family, c.len)];
      const res = await this.exec(this.conntrack, args);
      // conntrack exits 1 with "0 flow entries have been deleted" when nothing matched.
      const m = /(\d+) flow entries have been deleted/.exec(res.stderr + res.stdout);
      if (m) deleted += Number(m[1]);
      else if (res.code !== 0) throw new NftError(`conntrack -D ${formatCidr(c)}: ${firstLine(res.stderr)}`, res.stderr, res.code);
    }
    return deleted;
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
