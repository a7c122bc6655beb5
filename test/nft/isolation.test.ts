// Isolation on real nftables: a policy the kernel refuses fails alone. The standalone agent runs
// in this process, its executor the real one with one change: every script it sends (apply and
// --check alike) has `meta skuid 4242` replaced by `meta skuid 4294967296`, which nft refuses
// ("Value too large"). That is what `users: ["9999999999"]` did before the schema caught it;
// no input the schema and compiler now let through was found that the kernel refuses (tried
// with nft --check: overlapping port intervals, uid 4294967295, a cgroup v2 file as a path,
// log group 65535, limit rate 999999/second), so the test corrupts one policy's rules this way.
// Real packets decide; the other policies apply, the refused one keeps its last good version
// or is not added, and the log names the file with nft's own message.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { pino } from "pino";
import { StandaloneAgent } from "../../src/agent/standalone.js";
import { RealNftExecutor } from "../../src/nft/executor.js";
import { sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, freePort } from "../support/agent.js";
import { policyJump } from "../support/policy.js";

class CorruptingExecutor extends RealNftExecutor {
  checks = 0;
  private static corrupt(script: string): string {
    return script.replaceAll("meta skuid 4242", "meta skuid 4294967296");
  }
  override apply(script: string): Promise<void> {
    return super.apply(CorruptingExecutor.corrupt(script));
  }
  override check(script: string): Promise<void> {
    this.checks++;
    return super.check(CorruptingExecutor.corrupt(script));
  }
}

const deny = (name: string, addrs: string[], users = "") => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  mode: Enforce
  defaultAction: Allow
  rules:
    - name: deny
      action: Deny
      to: {cidrs: [${addrs.map((a) => `"${a}"`).join(", ")}]}
      ports: [{protocol: TCP, port: 443}]
${users ? `      users: [${users}]\n` : ""}`;

describe("one bad policy fails alone (standalone agent, real nft)", () => {
  let t: Topology;
  let files: TempDir;
  let agent: StandaloneAgent;
  let nft: CorruptingExecutor;
  const lines: string[] = [];
  let address = "";
  const logged = (re: RegExp) => eventually(`log ${re}`, async () => lines.join(""), (l) => re.test(l), 8000);
  const blocked = (addr: string) => eventually(`${addr} blocked`, () => probeTcp(t, addr, 443, { timeoutMs: 400 }), (r) => r === "timeout", 8000);
  const open = (addr: string) => eventually(`${addr} open`, () => probeTcp(t, addr, 443, { timeoutMs: 400 }), (r) => r === "connected", 8000);

  before(async () => {
    t = await createTopology("iso");
    files = tempDir();
    files.write("good.yaml", deny("good", ["192.0.2.10"]));
    nft = new CorruptingExecutor({ netns: t.node });
    const log = pino({ level: "info" }, { write: (s: string) => void lines.push(s) });
    const build = { passwd: files.passwd, group: "/dev/null", resolvConf: "/dev/null", failsafeFile: "/dev/null", nodeName: "iso", nodeLabels: {} };
    address = `127.0.0.1:${await freePort()}`;
    agent = new StandaloneAgent(nft, { policies: files.dir, build, metricsAddress: address, driftIntervalMs: 60_000, countersIntervalMs: 60_000, pollIntervalMs: 300 }, log);
    await agent.start();
  });
  after(async () => {
    await agent?.stop();
    await t?.close();
    files?.remove();
  });

  it("applies the directory", async () => {
    await blocked("192.0.2.10");
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
  });

  const listing = () => sh("ip", ["netns", "exec", t.node, "nft", "-t", "list", "chain", "inet", "nftegress", "output"]).stdout;

  it("a new policy the kernel refuses is not added; the others' changes apply; the file and nft's message are logged", async () => {
    const bad = files.write("bad.yaml", deny("bad-one", ["192.0.2.30"], '"4242"'));
    files.write("good.yaml", deny("good", ["192.0.2.10", "192.0.2.20"]));
    await blocked("192.0.2.20");
    const log = await logged(/"keptLastGood":false,"msg":"policy refused by the kernel, the others applied"/);
    assert.ok(log.includes(`"policy":"bad-one","file":"${bad}","error":"Value too large`), log.slice(-600));
    assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 400 }), "timeout", "the good policy still enforced");
    assert.doesNotMatch(listing(), policyJump("bad-one"), "never added");
    assert.match(listing(), policyJump("good", "2"));
    const m = await (await fetch(`http://${address}/metrics`)).text();
    assert.match(m, /nftegress_apply_total\{result="partial"\} [1-9]/);
  });

  it("a policy that turns refused keeps its last good version on real packets; the others apply", async () => {
    lines.length = 0;
    files.write("bad.yaml", deny("bad-one", ["192.0.2.30"]));
    await blocked("192.0.2.30");
    assert.match(listing(), policyJump("bad-one"));
    const gen = policyJump("bad-one").exec(listing())?.[1];
    files.write("bad.yaml", deny("bad-one", ["192.0.2.30"], '"4242"'));
    files.write("good.yaml", deny("good", ["192.0.2.10"]));
    await open("192.0.2.20");
    await logged(/"policy":"bad-one".*"keptLastGood":true,"msg":"policy refused by the kernel, the others applied"/);
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }), "timeout", "bad-one's last good version still denies 192.0.2.30");
    assert.match(listing(), policyJump("bad-one", gen), "the last good generation stays");
  });

  it("removed from the directory, the policy's last good version goes; recreated refused, it inherits nothing", async () => {
    rmSync(`${files.dir}/bad.yaml`);
    await open("192.0.2.30");
    lines.length = 0;
    files.write("bad.yaml", deny("bad-one", ["192.0.2.30"], '"4242"'));
    await logged(/"policy":"bad-one".*"keptLastGood":false,"msg":"policy refused by the kernel, the others applied"/);
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }), "connected", "the removed version (deny 192.0.2.30 for all) is not enforced again");
    assert.doesNotMatch(listing(), policyJump("bad-one"));
    rmSync(`${files.dir}/bad.yaml`);
  });

  it("a second object with the same name is refused with both locations; nothing is applied", async () => {
    lines.length = 0;
    const dup = files.write("dup.yaml", deny("other", ["192.0.2.20"]) + "---\n" + deny("good", ["192.0.2.30"]));
    const log = await logged(/"msg":"duplicate object names across files, keeping the last good state"/);
    assert.ok(log.includes(`${dup}: document 2: EgressPolicy/good: metadata.name: duplicate name, also defined in ${files.dir}/good.yaml: document 1`), log.slice(-500));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }), "connected", "neither document applied");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 400 }), "connected");
    assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 400 }), "timeout", "the last good state stays");
    rmSync(dup);
  });

  it("bisects with few nft --check runs", () => {
    // Three refusals traced above, with at most 3 policies each: 2*ceil(log2 3)+3 = 7 checks each.
    assert.ok(nft.checks >= 3 && nft.checks <= 21, `${nft.checks} checks`);
  });
});
