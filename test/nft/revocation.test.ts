// Revocation on real packets: every change that newly denies a flow cuts the established flows
// it denies within a second of the apply, and leaves every flow it still allows running. One
// case per kind of tightening, each with long-lived TCP and UDP flows on both sides.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cli, sh } from "../support/exec.js";
import { createTopology, nftIn, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { describeFlow, openFlow, waitUp, type Flow, type FlowSpec } from "../support/flows.js";
import { eventually, startAgent } from "../support/agent.js";
import { policyDoc } from "../support/policy.js";

const policy = policyDoc;

const WEB = `ports: [{protocol: TCP, port: 443}, {protocol: UDP, port: 123}]`;
const both = (addr: string, uid?: number): FlowSpec[] => [
  { protocol: "tcp", addr, port: 443, ...(uid !== undefined ? { uid } : {}) },
  { protocol: "udp", addr, port: 123, ...(uid !== undefined ? { uid } : {}) },
];

interface Case {
  name: string;
  before: string;
  after: string;
  beforeArgs?: string[];
  afterArgs?: string[];
  cut: FlowSpec[];
  kept: FlowSpec[];
}

const CASES: Case[] = [
  {
    name: "Audit -> Enforce",
    before: policy("p", `  mode: Audit\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    after: policy("p", `  mode: Enforce\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    cut: both("192.0.2.20"),
    kept: both("192.0.2.10"),
  },
  {
    name: "a new Deny rule",
    before: policy("p", `  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    after: policy("p", `  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: no-20, action: Deny, to: {cidrs: ["192.0.2.20"]}}\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    cut: both("192.0.2.20"),
    kept: both("192.0.2.10"),
  },
  {
    name: "a destination removed",
    before: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10", "192.0.2.20"]}, ${WEB}}`),
    after: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    cut: both("192.0.2.20"),
    kept: both("192.0.2.10"),
  },
  {
    name: "a port removed",
    before: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}, {protocol: TCP, port: 8080}, {protocol: UDP, port: 53}, {protocol: UDP, port: 123}]}`),
    after: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}, {protocol: UDP, port: 53}]}`),
    cut: [
      { protocol: "tcp", addr: "192.0.2.10", port: 8080 },
      { protocol: "udp", addr: "192.0.2.10", port: 123 },
    ],
    kept: [
      { protocol: "tcp", addr: "192.0.2.10", port: 443 },
      { protocol: "udp", addr: "192.0.2.10", port: 53 },
    ],
  },
  {
    name: "a user removed",
    before: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, users: ["4242", "4343"], to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    after: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, users: ["4343"], to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    cut: both("192.0.2.10", 4242),
    kept: both("192.0.2.10", 4343),
  },
  {
    name: "a group removed",
    before: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, groups: ["4242", "4343"], to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    after: policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, groups: ["4343"], to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    cut: both("192.0.2.10", 4242),
    kept: both("192.0.2.10", 4343),
  },
  {
    name: "a policy newly selecting the node",
    before: policy("p", `  nodeSelector: {matchLabels: {role: app}}\n  mode: Enforce\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    after: policy("p", `  nodeSelector: {matchLabels: {role: app}}\n  mode: Enforce\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`),
    beforeArgs: ["--node-labels", "role=db"],
    afterArgs: ["--node-labels", "role=app"],
    cut: both("192.0.2.20"),
    kept: both("192.0.2.10"),
  },
  {
    name: "a priority change that puts a Deny first",
    before:
      policy("allow-20", `  priority: 10\n  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: twenty, action: Allow, to: {cidrs: ["192.0.2.20"]}}`) +
      policy("deny-20", `  priority: 20\n  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: twenty, action: Deny, to: {cidrs: ["192.0.2.20"]}}`),
    after:
      policy("allow-20", `  priority: 10\n  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: twenty, action: Allow, to: {cidrs: ["192.0.2.20"]}}`) +
      policy("deny-20", `  priority: 5\n  mode: Enforce\n  defaultAction: Allow\n  rules:\n    - {name: twenty, action: Deny, to: {cidrs: ["192.0.2.20"]}}`),
    cut: both("192.0.2.20"),
    kept: both("192.0.2.10"),
  },
];

// Both layouts of src/nft/recheck.ts: the flows set (default) and the conntrack mark bits.
const LAYOUTS = [
  { name: "flows set", args: [] as string[] },
  { name: "conntrack mark 0x00ff0000", args: ["--revocation-mark", "0x00ff0000"] },
];

for (const layout of LAYOUTS)
describe(`revocation of established flows (${layout.name})`, () => {
  let t: Topology;
  let files: TempDir;
  const open: Flow[] = [];
  before(async () => {
    t = await createTopology("rev");
    files = tempDir();
  });
  after(async () => {
    for (const f of open) f.close();
    await t?.close();
    files?.remove();
  });

  async function apply(text: string, args: string[] = []): Promise<number> {
    files.write("p.yaml", text);
    const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state, ...layout.args, ...args]);
    assert.equal(r.code, 0, r.stderr);
    return Date.now();
  }

  async function cleanup(): Promise<void> {
    const r = await cli(["cleanup", "--netns", t.node]);
    assert.equal(r.code, 0, r.stderr);
  }

  function start(specs: readonly FlowSpec[]): Flow[] {
    const flows = specs.map((s) => openFlow(t, s));
    open.push(...flows);
    return flows;
  }

  /** After the change at `changed`: cut flows got no answer after a second, kept flows kept answering. */
  async function judge(cut: readonly Flow[], kept: readonly Flow[], changed: number): Promise<void> {
    await new Promise((r) => setTimeout(r, 2000));
    for (const f of cut) assert.equal(f.answersAfter(changed + 1000), 0, `${describeFlow(f.spec)} still passes more than a second after the change`);
    for (const f of kept) assert.ok(f.answersAfter(changed + 1000) >= 5, `${describeFlow(f.spec)} was allowed before and after, but stopped (${f.answersAfter(changed + 1000)} answers)`);
    for (const f of [...cut, ...kept]) f.close();
  }

  for (const c of CASES) {
    it(`${c.name}: cuts the flows now denied, keeps the others`, async () => {
      await cleanup();
      await apply(c.before, c.beforeArgs);
      const cut = start(c.cut);
      const kept = start(c.kept);
      await waitUp([...cut, ...kept]);
      const changed = await apply(c.after, c.afterArgs);
      await judge(cut, kept, changed);
    });
  }

  it("the first apply: flows opened before it (not yet tracked by conntrack) stay up where the policy allows them", async () => {
    await cleanup();
    const cut = start(both("192.0.2.20"));
    const kept = start(both("192.0.2.10"));
    await waitUp([...cut, ...kept]);
    const changed = await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: ten, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`));
    await judge(cut, kept, changed);
  });

  it("a garbled state directory changes nothing: revocation lives in the kernel, not in a file", async () => {
    await cleanup();
    await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10", "192.0.2.20"]}, ${WEB}}`));
    const cut = start(both("192.0.2.20"));
    const kept = start(both("192.0.2.10"));
    await waitUp([...cut, ...kept]);
    // What earlier versions kept there (the allowed list), and garbage in every file it has now.
    const dir = join(files.state, `netns-${t.node}`);
    mkdirSync(dir, { recursive: true });
    for (const name of ["allowed.txt", "confirmed.json", "lock"]) writeFileSync(join(dir, name), "\u0000garbage\n{{{ not json\n0.0.0.0/0\n");
    const changed = await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`));
    await judge(cut, kept, changed);
  });

  it("a state directory that cannot be used: one clear line, exit 1, nothing applied", async () => {
    await cleanup();
    await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`));
    const notADir = join(files.state, "..", "state-file");
    writeFileSync(notADir, "a file where a directory should be\n");
    files.write("p.yaml", policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.20"]}, ${WEB}}`));
    const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", notADir, ...layout.args]);
    assert.equal(r.code, 1, r.stdout);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^nftegress: .*state-file/);
    const flows = start([...both("192.0.2.10"), ...both("192.0.2.20")]);
    await new Promise((res) => setTimeout(res, 1500));
    assert.ok((flows[0]?.answers.length ?? 0) > 0 && (flows[1]?.answers.length ?? 0) > 0, "the previous ruleset still allows 192.0.2.10");
    assert.equal((flows[2]?.answers.length ?? 0) + (flows[3]?.answers.length ?? 0), 0, "and still denies 192.0.2.20");
    for (const f of flows) f.close();
  });

  it("a change that loosens keeps every flow and lets the newly allowed one through", async () => {
    await cleanup();
    await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ${WEB}}`));
    const kept = start(both("192.0.2.10"));
    await waitUp(kept);
    const changed = await apply(policy("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10", "192.0.2.20"]}, ${WEB}}`));
    const added = start(both("192.0.2.20"));
    await waitUp(added);
    await judge([], [...kept, ...added], changed);
  });
});

describe("revocation by conntrack mark: the other bits of the mark are never changed", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    t = await createTopology("revmark");
    files = tempDir();
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  const marks = (port: number): number[] => {
    const r = sh("ip", ["netns", "exec", t.node, "conntrack", "-L", "-p", "tcp", "--dport", String(port)]);
    return [...r.stdout.matchAll(/ mark=(\d+)/g)].map((m) => Number(m[1]));
  };

  it("another tool's bits survive our stamp, and our bits move to a new epoch at each change", async () => {
    // Another tool: sets bit 0 of the mark on every new flow, before our table sees it.
    nftIn(t.node, "table inet othertool { chain out { type filter hook output priority -10; policy accept; ct state new ct mark set ct mark or 0x00000001; }\n}");
    const body = (extra: string) => `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"${extra}]}, ports: [{protocol: TCP, port: 443}]}`;
    const apply = async (extra: string) => {
      files.write("p.yaml", policyDoc("p", body(extra)));
      const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state, "--revocation-mark", "0x00ff0000"]);
      assert.equal(r.code, 0, r.stderr);
    };
    await apply("");
    const flow = openFlow(t, { protocol: "tcp", addr: "192.0.2.10", port: 443 });
    try {
      await waitUp([flow]);
      const first = marks(443);
      assert.ok(first.length >= 1, "conntrack lists the flow");
      for (const m of first) {
        assert.equal(m & 0x1, 0x1, `the other tool's bit is kept (mark ${m.toString(16)})`);
        assert.ok((m & 0x00ff0000) !== 0, `our bits hold an epoch (mark ${m.toString(16)})`);
        assert.equal(m & ~0x00ff0001, 0, "no other bit set");
      }
      await apply(', "192.0.2.20"');
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(flow.answersAfter(Date.now() - 1000) >= 1, "the allowed flow keeps going through the change");
      const second = marks(443);
      for (const m of second) {
        assert.equal(m & 0x1, 0x1, "still kept after the re-stamp");
        assert.notEqual(m & 0x00ff0000, (first[0] ?? 0) & 0x00ff0000, "re-stamped with the next epoch");
      }
    } finally {
      flow.close();
      nftIn(t.node, "delete table inet othertool");
    }
  });

  it("the standalone agent: drift repaired and a tightening cuts the flow it denies, epoch after epoch", async () => {
    const body = (cidrs: string) => policyDoc("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: [${cidrs}]}, ports: [{protocol: TCP, port: 443}]}`);
    files.write("p.yaml", body(`"192.0.2.10", "192.0.2.20"`));
    const agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--drift-interval", "1", "--state-dir", files.state, "--revocation-mark", "0x0000ff00"]);
    const flows: Flow[] = [];
    try {
      await eventually("enforced", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 300 }), (r) => r === "timeout", 10_000);
      flows.push(openFlow(t, { protocol: "tcp", addr: "192.0.2.10", port: 443 }), openFlow(t, { protocol: "tcp", addr: "192.0.2.20", port: 443 }));
      await waitUp(flows);
      // Someone flushes our table's chains: the agent repairs it (at a new epoch).
      sh("ip", ["netns", "exec", t.node, "nft", "flush", "table", "inet", "nftegress"]);
      await eventually("repaired", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 300 }), (r) => r === "timeout", 10_000);
      files.write("p.yaml", body(`"192.0.2.10"`));
      // Applied once a new flow to 192.0.2.20 is denied; the old one must then be cut too.
      await eventually("tightened", () => probeTcp(t, "192.0.2.20", 443, { timeoutMs: 300 }), (r) => r === "timeout", 10_000);
      const changed = Date.now();
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(flows[1]?.answersAfter(changed + 1000), 0, "the established flow to 192.0.2.20 is cut");
      assert.ok((flows[0]?.answersAfter(changed + 1000) ?? 0) >= 5, "the flow to 192.0.2.10 keeps going");
    } finally {
      for (const f of flows) f.close();
      await agent.stop();
    }
  });

  it("a mask that is not 8 to 24 contiguous bits: one line, usage exit 2, nothing applied", async () => {
    files.write("p.yaml", policyDoc("p", `  mode: Enforce\n  rules:\n    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}}`));
    // Stateless: counters of the earlier tests keep counting background packets.
    const before = sh("ip", ["netns", "exec", t.node, "nft", "-s", "list", "ruleset"]).stdout;
    for (const bad of ["0x00f0f000", "0xf", "0xffffffff", "banana"]) {
      const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state, "--revocation-mark", bad]);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr.split("\n")[0] ?? "", /--revocation-mark: .* is not a mask of 8 to 24 contiguous bits/);
    }
    assert.equal(sh("ip", ["netns", "exec", t.node, "nft", "-s", "list", "ruleset"]).stdout, before);
  });
});
