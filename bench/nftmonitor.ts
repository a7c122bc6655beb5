// The kernel's view of a simulated node: `nft monitor` inside the node's network namespace.
// The kernel sends its netlink notifications only when it commits a transaction, and nft
// prints each committed batch followed by "# new generation N by process P (nft)" (line
// buffered, so each line arrives as it is printed). The agent writes a policy's generation
// into the comment of that policy's jump rule in the `output` chain (`jump ID comment "policy
// gen:G ..."`, ID the policy's id), and a changed generation rewrites that chain in the same
// `nft -f` transaction as the policy's element diffs: the first committed batch that carries it is the
// moment the node enforces generation G, in the kernel, elements included.
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { must } from "../test/support/exec.js";
import { now, sleep, spawnIn } from "./lib.js";
import { policyId } from "../src/policy/names.js";

export interface Commit {
  /** When the batch's first line arrived (ms, performance.timeOrigin based). */
  at: number;
  lines: string[];
}

export class KernelMonitor {
  /** Generation G of the watched policy -> the first committed batch that carried it. */
  readonly generations = new Map<number, Commit>();
  private readonly child: ChildProcess;
  private batch: Commit | null = null;
  private readonly marker: RegExp;
  private seenProbe = false;

  constructor(
    readonly ns: string,
    policy: string,
  ) {
    // nft monitor may print the rule's handle before its statements.
    this.marker = new RegExp(`^add rule inet nftegress output (?:handle \\d+ )?jump ${policyId(policy)} comment "policy gen:(\\d+) `);
    this.child = spawnIn(ns, ["nft", "monitor"]);
    const lines = createInterface({ input: this.child.stdout ?? process.stdin });
    lines.on("line", (l) => this.line(l, now()));
  }

  private line(l: string, at: number): void {
    if (l.startsWith("add table inet nfteb_probe")) this.seenProbe = true;
    if (l.startsWith("# new generation")) {
      const b = this.batch;
      this.batch = null;
      if (!b) return;
      for (const x of b.lines) {
        const g = Number(this.marker.exec(x)?.[1] ?? NaN);
        if (Number.isInteger(g) && !this.generations.has(g)) this.generations.set(g, b);
      }
      return;
    }
    this.batch ??= { at, lines: [] };
    this.batch.lines.push(l);
  }

  /** Resolves once the monitor is subscribed: a probe table of our own (never the agent's
   *  `inet nftegress`) is added and deleted until the monitor prints it. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const end = now() + timeoutMs;
    while (!this.seenProbe) {
      if (now() > end) throw new Error(`nft monitor in ${this.ns} printed nothing within ${timeoutMs} ms`);
      must("ip", ["netns", "exec", this.ns, "nft", "add table inet nfteb_probe; delete table inet nfteb_probe"]);
      const wait = now() + 500;
      while (!this.seenProbe && now() < wait) await sleep(10);
    }
  }

  /** True when the batch of generation G changed an element that mentions `addr`. */
  elementChanged(generation: number, verb: "add" | "delete", addr: string): boolean {
    const b = this.generations.get(generation);
    return !!b?.lines.some((l) => l.startsWith(`${verb} element inet nftegress `) && (l.includes(` ${addr} `) || l.includes(` ${addr},`)));
  }

  stop(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}
