// Fault injection on real nftables and real packets: kill -9 of `nftegress apply` and of the
// standalone agent at random (seeded) moments of large applies, including while nft is still
// reading the transaction, leaves the kernel with exactly the old or the new ruleset; two
// applies at once are serialised by the table's lock; a killed holder never leaves the lock
// behind; a lock that stays busy gives one clear line and exit 1.
//
// The two policy files differ in everything a half-applied transaction would show: the one
// address each allows (192.0.2.10 or 192.0.2.20, port 443; 192.0.2.30 is never allowed) and a
// Deny list of N addresses each (disjoint). Deny lists, so that a change revokes one flow, not N.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, readdirSync, renameSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { CLI, ROOT, run, sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";
import { rng } from "../support/random.js";

type Which = "a" | "b";
const ALLOWED: Record<Which, string> = { a: "192.0.2.10", b: "192.0.2.20" };
const NEVER = "192.0.2.30";

function ip(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** One file: the policy, its allow set (one address) and its deny list of n addresses (never adjacent, so nothing merges). */
function policyFile(which: Which, n: number): string {
  const base = which === "a" ? 10 << 24 : (10 << 24) + (64 << 16);
  const deny = Array.from({ length: n }, (_, i) => ip(base + 2 * i));
  const docs = [
    `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: web}
spec:
  mode: Enforce
  defaultAction: Deny
  rules:
    - name: blocked
      action: Deny
      to: {addressSets: [deny-${which}]}
    - name: web
      action: Allow
      to: {addressSets: [allow-${which}]}
      ports: [{protocol: TCP, port: 443}]
`,
    `apiVersion: nftegress.io/v1alpha1
kind: EgressAddressSet
metadata: {name: allow-${which}, labels: {nftegress.io/set: allow-${which}}}
spec: {cidrs: ["${ALLOWED[which]}"]}
`,
  ];
  for (let c = 0; c * 10_000 < n; c++) {
    docs.push(`apiVersion: nftegress.io/v1alpha1
kind: EgressAddressSet
metadata: {name: deny-${which}-${c}, labels: {nftegress.io/set: deny-${which}}}
spec: {cidrs: [${deny.slice(c * 10_000, (c + 1) * 10_000).map((s) => `"${s}"`).join(", ")}]}
`);
  }
  return docs.join("---\n");
}

interface Snapshot {
  /** Terse listing (no set elements), counter values blanked. */
  terse: string;
  /** Every static set of the table: its elements, sorted. */
  sets: Map<string, string[]>;
}

function nft(ns: string, args: string[]): string {
  const r = sh("nsenter", [`--net=/run/netns/${ns}`, "--", "nft", ...args]);
  if (r.code !== 0) throw new Error(`nft ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

function elementsOf(json: string): string[] {
  const out: string[] = [];
  for (const o of (JSON.parse(json) as { nftables: Record<string, unknown>[] }).nftables) {
    const set = o["set"] as { elem?: unknown[] } | undefined;
    for (const e of set?.elem ?? []) out.push(typeof e === "string" ? e : JSON.stringify(e));
  }
  return out.sort();
}

function snapshot(ns: string): Snapshot | null {
  const listing = sh("nsenter", [`--net=/run/netns/${ns}`, "--", "nft", "-t", "list", "table", "inet", "nftegress"]);
  if (listing.code !== 0) return null;
  // The standalone agent counts generations from its start: a restarted agent says gen:1 again.
  const terse = listing.stdout.replace(/packets \d+ bytes \d+/g, "packets - bytes -").replace(/ gen:\d+ /g, " gen:- ");
  const sets = new Map<string, string[]>();
  for (const m of terse.matchAll(/\tset (\S+) \{([^}]*)\}/g)) {
    const [, name = "", body = ""] = m;
    if (/flags [^\n]*dynamic/.test(body)) continue;
    sets.set(name, elementsOf(nft(ns, ["-j", "list", "set", "inet", "nftegress", name])));
  }
  return { terse, sets };
}

function same(a: Snapshot, b: Snapshot): boolean {
  if (a.terse !== b.terse || a.sets.size !== b.sets.size) return false;
  for (const [name, els] of a.sets) {
    const other = b.sets.get(name);
    if (!other || other.length !== els.length || other.some((e, i) => e !== els[i])) return false;
  }
  return true;
}

/** Waits until nobody holds the table's lock (a killed apply's nft may still be committing). */
async function lockFree(lock: string): Promise<void> {
  const r = await run("flock", ["-w", "60", lock, "true"]);
  assert.equal(r.code, 0, `lock ${lock} still held after 60 s: ${r.stderr}`);
}

/** Which file's ruleset the kernel holds, judged by packets and by the listing; fails on anything else. */
async function judge(t: Topology, refs: Record<Which, Snapshot>, what: string): Promise<Which> {
  const [a, b, never] = await Promise.all([ALLOWED.a, ALLOWED.b, NEVER].map((addr) => probeTcp(t, addr, 443, { timeoutMs: 500 })));
  const byPackets: Which | null = a === "connected" && b === "timeout" ? "a" : b === "connected" && a === "timeout" ? "b" : null;
  assert.ok(byPackets, `${what}: packets show neither state: ${ALLOWED.a} ${a}, ${ALLOWED.b} ${b}`);
  assert.equal(never, "timeout", `${what}: ${NEVER} is never allowed, but ${never}`);
  const snap = snapshot(t.node);
  assert.ok(snap, `${what}: no table`);
  assert.ok(same(snap, refs[byPackets]), `${what}: the table is not exactly file ${byPackets}'s ruleset (sets: ${[...snap.sets].map(([n, e]) => `${n}:${e.length}`).join(", ")})`);
  return byPackets;
}

/** The pid of the transaction nft started by pid (nsenter execs nft: same pid, comm nft), if any. */
function nftChild(pid: number): number | null {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
      // The transaction's nft (it reads /dev/fd/3), not the short listing nft that comes first.
      if (m && m[1] === "nft" && Number(m[2]) === pid && readFileSync(`/proc/${d}/cmdline`, "utf8").includes("/dev/fd/")) return Number(d);
    } catch {
      // gone
    }
  }
  return null;
}

/** The first child of a process (direct children only, cheap enough to poll in a tight loop). */
function firstChild(pid: number): number | null {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(" ")[0];
    return first ? Number(first) : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** kill -9, once (the support helper's stop() waits for an exit that already happened when called twice). */
async function kill9(a: AgentProcess | null): Promise<void> {
  if (a && a.child.exitCode === null && a.child.signalCode === null) await a.stop("SIGKILL");
}

describe("faults: kill -9, concurrent applies, the table lock", () => {
  let t: Topology;
  let files: TempDir;
  let lock: string;
  const dirs: Record<Which, string> = { a: "", b: "" };
  const refs = {} as Record<Which, Snapshot>;
  const common = () => ["--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state];

  before(async () => {
    t = await createTopology("flt");
    files = tempDir();
    lock = join(files.state, `netns-${t.node}`, "lock");
    for (const w of ["a", "b"] as const) {
      dirs[w] = join(files.dir, "..", `big-${w}`);
      mkdirSync(dirs[w]);
      writeFileSync(join(dirs[w], "policy.yaml"), policyFile(w, 100_000));
    }
    // The reference state of each file, from complete applies.
    for (const w of ["b", "a"] as const) {
      const r = await run(process.execPath, [CLI, "apply", "-f", dirs[w], ...common()]);
      assert.equal(r.code, 0, r.stderr);
      const s = snapshot(t.node);
      assert.ok(s);
      refs[w] = s;
    }
    assert.equal(refs.a.sets.size, 2);
    assert.deepEqual([...refs.a.sets.values()].map((e) => e.length).sort((x, y) => x - y), [1, 100_000]);
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  it("kill -9 of apply at random moments of a 100k-destination apply: old or new ruleset, never a mix", async (ctx) => {
    const random = rng(12);
    let state = await judge(t, refs, "before the rounds");
    assert.equal(state, "a");
    const rounds = 24;
    let duringNft = 0;
    let changed = 0;
    for (let i = 0; i < rounds; i++) {
      const next: Which = state === "a" ? "b" : "a";
      const child = spawn(process.execPath, [CLI, "apply", "-f", dirs[next], ...common()], { stdio: "ignore" });
      const pid = child.pid ?? 0;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      let nftAlive = false;
      if (i % 2 === 0) {
        // Any moment from start to about the end of a whole apply.
        await sleep(Math.floor(random() * 2000));
      } else {
        // While nft runs: wait for it to start, then a little.
        const end = Date.now() + 15_000;
        let n: number | null = null;
        while (n === null && Date.now() < end && child.exitCode === null) {
          n = nftChild(pid);
          if (n === null) await sleep(5);
        }
        assert.ok(n !== null, `round ${i}: nft never started`);
        await sleep(Math.floor(random() * 40));
        nftAlive = alive(n);
      }
      if (i % 2 === 0) {
        const n = nftChild(pid);
        nftAlive = n !== null && alive(n);
      }
      child.kill("SIGKILL");
      await exited;
      if (nftAlive) duringNft++;
      await lockFree(lock);
      const now = await judge(t, refs, `round ${i} (killed ${nftAlive ? "while nft ran" : "outside nft"})`);
      if (now !== state) changed++;
      state = now;
    }
    // The rounds are worth something only if some kills hit nft mid-transaction.
    assert.ok(duringNft >= rounds / 4, `only ${duringNft} of ${rounds} kills while nft ran`);
    // And an undisturbed apply still works afterwards.
    const next: Which = state === "a" ? "b" : "a";
    const r = await run(process.execPath, [CLI, "apply", "-f", dirs[next], ...common()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await judge(t, refs, "after the rounds"), next);
    ctx.diagnostic(`${rounds} kills, ${duringNft} while nft ran, ${changed} left the new ruleset`);
  });

  it("two applies at once of different files: serialised, both exit clearly, the last one's ruleset exactly", async () => {
    const small = { a: join(files.dir, "..", "small-a"), b: join(files.dir, "..", "small-b") };
    for (const w of ["a", "b"] as const) {
      mkdirSync(small[w]);
      writeFileSync(join(small[w], "policy.yaml"), policyFile(w, 500));
    }
    const smallRefs = {} as Record<Which, Snapshot>;
    for (const w of ["a", "b"] as const) {
      assert.equal((await run(process.execPath, [CLI, "apply", "-f", small[w], ...common()])).code, 0);
      const s = snapshot(t.node);
      assert.ok(s);
      smallRefs[w] = s;
    }
    for (let i = 0; i < 6; i++) {
      const go = (w: Which) => run(process.execPath, [CLI, "apply", "-f", small[w], ...common()]);
      const [ra, rb] = await Promise.all([go("a"), go("b")]);
      for (const [w, r] of [["a", ra], ["b", rb]] as const) {
        if (r.code === 0) assert.match(r.stdout, /^applied 1 policies /, `${w}: ${r.stdout}`);
        else {
          assert.equal(r.code, 1, `${w}: ${r.stderr}`);
          assert.match(r.stderr, /^nftegress: table inet nftegress in netns \S+ is locked by pid \d+: nftegress apply [^\n]*gave up after 30 s[^\n]*\n$/);
        }
      }
      assert.ok(ra.code === 0 || rb.code === 0, "at least one applied");
      const state = await judge(t, smallRefs, `concurrent round ${i}`);
      // The lock file names its last holder: the apply that committed last.
      const last = /apply -f \S+small-(a|b) /.exec(readFileSync(lock, "utf8"))?.[1];
      assert.equal(state, last, `round ${i}: the ruleset is the last holder's (${readFileSync(lock, "utf8").trim()})`);
    }
  });

  it("the agent holds the lock: apply gives up with one line naming it; a second agent waits, unready; kill -9 frees the lock", async () => {
    const dir = join(files.dir, "..", "agent-lock");
    mkdirSync(dir);
    writeFileSync(join(dir, "policy.yaml"), policyFile("a", 50));
    const args = ["--standalone", "--policies", dir, ...common(), "--drift-interval", "60"];
    const first = await startAgent(args);
    let second: AgentProcess | null = null;
    try {
      await eventually("first agent ready", () => first.get("/readyz"), (r) => r.status === 200, 20_000);
      const started = Date.now();
      const r = await run(process.execPath, [CLI, "apply", "-f", dirs.b, ...common(), "--lock-timeout", "1"]);
      const ms = Date.now() - started;
      assert.equal(r.code, 1);
      assert.equal(r.stdout, "");
      const lines = r.stderr.split("\n").filter(Boolean);
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0] ?? "", new RegExp(`^nftegress: table inet nftegress in netns ${t.node} is locked by pid ${first.child.pid}: nftegress agent --metrics-address \\S+ --standalone --policies ${dir} [^\\n]*; gave up after 1 s \\(--lock-timeout\\)$`));
      assert.ok(ms >= 1000, `gave up after ${ms} ms, not the 1 s asked`);
      assert.equal(await probeTcp(t, ALLOWED.a, 443), "connected", "the agent's ruleset stays");
      assert.equal(await probeTcp(t, ALLOWED.b, 443, { timeoutMs: 500 }), "timeout", "nothing of the refused apply");

      second = await startAgent(args);
      await eventually("second agent waits", async () => second?.log() ?? "", (l) => /table locked by another process, waiting for it/.test(l), 10_000);
      await sleep(1500);
      assert.equal((await second.get("/healthz")).status, 200, "live while waiting");
      assert.notEqual((await second.get("/readyz")).status, 200, "not ready while waiting");
      assert.equal(second.log().match(/table locked by another process/g)?.length, 1, "logged once");
      assert.match(second.log(), new RegExp(`"holder":"pid ${first.child.pid}: nftegress agent `));

      await kill9(first);
      await eventually("second agent takes over", () => (second as AgentProcess).get("/readyz"), (res) => res.status === 200, 20_000);
      await kill9(second);
      // Nobody holds it now: an apply that does not wait at all goes through.
      const free = await run(process.execPath, [CLI, "apply", "-f", dirs.b, ...common(), "--lock-timeout", "0"]);
      assert.equal(free.code, 0, free.stderr);
      assert.equal(await judge(t, refs, "after the agents were killed"), "b");
    } finally {
      await kill9(first);
      await kill9(second);
    }
  });

  it("a lock held by another process (flock(1)) makes cleanup wait, then give up; released, cleanup goes through", async () => {
    writeFileSync(lock, "pid 1: a test holder\n");
    const holder = spawn("flock", ["--close", lock, "sleep", "30"], { stdio: "ignore" });
    try {
      await eventually("held", async () => (await run("flock", ["-n", lock, "true"])).code, (c) => c === 1, 5000);
      const r = await run(process.execPath, [CLI, "cleanup", "--netns", t.node, "--state-dir", files.state, "--lock-timeout", "0.5"]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `nftegress: table inet nftegress in netns ${t.node} is locked by pid 1: a test holder (${lock}); gave up after 0.5 s (--lock-timeout)\n`);
      assert.ok(snapshot(t.node), "the table is still there");
      const waiting = run(process.execPath, [CLI, "cleanup", "--netns", t.node, "--state-dir", files.state, "--lock-timeout", "20"]);
      await sleep(1000);
      holder.kill("SIGKILL");
      const done = await waiting;
      assert.equal(done.code, 0, done.stderr);
      assert.equal(snapshot(t.node), null, "cleanup ran once the holder was gone");
    } finally {
      holder.kill("SIGKILL");
    }
    // Bad values are usage errors.
    const bad = await run(process.execPath, [CLI, "apply", "-f", dirs.a, ...common(), "--lock-timeout", "soon"]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^nftegress: --lock-timeout must be a number of seconds/);
  });

  it("kill -9 of a writer while nft reads a transaction whose every cut would parse: nothing or all of it", async () => {
    // Every line is exactly 256 bytes (a statement, then a comment padding it), so a pipe cut
    // at any page boundary ends on a whole statement and parses: fed through a pipe, a writer
    // frozen mid-write and killed makes nft commit the prefix it got (seen on the old executor:
    // 9,133 of 16,000 elements). The writer is frozen a little later each round, from the
    // moment it starts nft to well after nft has read everything, then killed.
    const lines = 16_000;
    const line = (text: string) => {
      const l = `${text} #`;
      return l + "x".repeat(255 - l.length);
    };
    const script = (w: Which) => {
      const out = [line("add table inet nftfaults"), line("add set inet nftfaults allow { type ipv4_addr; }"), line("add chain inet nftfaults output { type filter hook output priority 10; policy accept; }"), line("flush chain inet nftfaults output"), line("flush set inet nftfaults allow")];
      for (let i = 0; i < lines; i++) out.push(line(`add element inet nftfaults allow { ${ip((10 << 24) + (w === "a" ? 0 : 1 << 20) + 2 * i)} }`));
      out.push(line(`add element inet nftfaults allow { ${ALLOWED[w]} }`), line("add rule inet nftfaults output tcp dport 443 ip daddr != @allow drop"));
      return `${out.join("\n")}\n`;
    };
    const scripts = { a: join(files.dir, "..", "writer-a.nft"), b: join(files.dir, "..", "writer-b.nft") };
    for (const w of ["a", "b"] as const) writeFileSync(scripts[w], script(w));
    const writer = join(ROOT, "dist", "test", "support", "nft-writer.js");
    // Only this test's table filters (the agent test after it applies nftegress again).
    assert.equal((await run(process.execPath, [CLI, "cleanup", "--netns", t.node, "--state-dir", files.state])).code, 0);
    const state = async (what: string): Promise<Which> => {
      const [a, b] = await Promise.all([ALLOWED.a, ALLOWED.b].map((addr) => probeTcp(t, addr, 443, { timeoutMs: 500 })));
      const w: Which | null = a === "connected" && b === "timeout" ? "a" : b === "connected" && a === "timeout" ? "b" : null;
      assert.ok(w, `${what}: packets show neither script's state: ${ALLOWED.a} ${a}, ${ALLOWED.b} ${b}`);
      const els = elementsOf(nft(t.node, ["-j", "list", "set", "inet", "nftfaults", "allow"]));
      assert.equal(els.length, lines + 1, `${what}: the set holds ${els.length} elements, not ${lines + 1}`);
      assert.ok(els.includes(ALLOWED[w]) && !els.includes(ALLOWED[w === "a" ? "b" : "a"]));
      return w;
    };
    assert.equal((await run(process.execPath, [writer, t.node, scripts.a])).code, 0);
    let now = await state("before");
    const ROUNDS = 24;
    let during = 0;
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const child = spawn(process.execPath, [writer, t.node, scripts[now === "a" ? "b" : "a"]], { stdio: "ignore" });
        const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        // Freeze the writer the moment it has started nft (nsenter, then nft), give nft time to
        // read whatever reached it, then kill the writer: a pipe then ends early, mid-script
        // (at most its 64 KiB buffer was written); a file complete before the start cannot.
        let n: number | null = null;
        const end = Date.now() + 10_000;
        while (n === null && Date.now() < end && child.exitCode === null) {
          n = firstChild(child.pid ?? 0);
          if (n === null) await new Promise((r) => setImmediate(r));
        }
        const at = performance.now() + i * 3;
        while (performance.now() < at) {
          // spin: timers are too coarse for the first milliseconds
        }
        if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGSTOP");
        await sleep(150);
        if (n !== null) during++; // nft had started: the writer died with nft reading or done
        child.kill("SIGKILL");
        await exited;
        // An orphaned nft finishes what it was given; wait for it.
        while (n !== null && alive(n)) await sleep(10);
        now = await state(`writer round ${i}`);
      }
    } finally {
      sh("nsenter", [`--net=/run/netns/${t.node}`, "--", "nft", "delete", "table", "inet", "nftfaults"]);
    }
    assert.ok(during >= ROUNDS - 2, `nft had started before only ${during} of ${ROUNDS} kills`);
  });

  it("kill -9 of the standalone agent at random moments of large applies: old or new ruleset, denied counters never go backwards", async () => {
    const n = 25_000;
    const agentRefs = {} as Record<Which, Snapshot>;
    const agentDirs = { a: join(files.dir, "..", "agent-a"), b: join(files.dir, "..", "agent-b") };
    for (const w of ["a", "b"] as const) {
      mkdirSync(agentDirs[w]);
      writeFileSync(join(agentDirs[w], "policy.yaml"), policyFile(w, n));
      assert.equal((await run(process.execPath, [CLI, "apply", "-f", agentDirs[w], ...common()])).code, 0);
      const s = snapshot(t.node);
      assert.ok(s);
      agentRefs[w] = s;
    }
    const policies = join(files.dir, "..", "agent-policies");
    mkdirSync(policies);
    const put = (w: Which) => {
      writeFileSync(join(policies, ".next"), policyFile(w, n));
      renameSync(join(policies, ".next"), join(policies, "policy.yaml"));
    };
    const denied = () => {
      const name = /counter (p\w+_denied) \{/.exec(nft(t.node, ["-t", "list", "counters", "table", "inet", "nftegress"]))?.[1];
      assert.ok(name, "a denied counter");
      return Number(/packets (\d+)/.exec(nft(t.node, ["list", "counter", "inet", "nftegress", name]))?.[1]);
    };
    const random = rng(7);
    let state = await judge(t, agentRefs, "before the agent rounds");
    let counter = denied();
    const rounds = 24;
    for (let i = 0; i < rounds; i++) {
      const next: Which = state === "a" ? "b" : "a";
      let agent: AgentProcess;
      if (i % 2 === 0) {
        // Killed during its start-up apply (a full transaction of the whole ruleset).
        put(next);
        agent = await startAgent(["--standalone", "--policies", policies, ...common(), "--drift-interval", "60"]);
        await sleep(Math.floor(random() * 2000));
      } else {
        // Killed while applying a change of the file (an incremental transaction of 2n elements).
        put(state);
        agent = await startAgent(["--standalone", "--policies", policies, ...common(), "--drift-interval", "60"]);
        await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200, 30_000);
        put(next);
        await sleep(Math.floor(random() * 1500));
      }
      await kill9(agent);
      await lockFree(lock);
      state = await judge(t, agentRefs, `agent round ${i}`);
      const now = denied();
      assert.ok(now >= counter, `round ${i}: denied packets went from ${counter} to ${now}`);
      counter = now;
      // One more denied packet for the next round to keep.
      assert.equal(await probeTcp(t, NEVER, 443, { timeoutMs: 300 }), "timeout");
      assert.ok(denied() > counter, "the denied counter counts");
      counter = denied();
    }
  });
});
