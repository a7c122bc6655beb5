// Drift that keeps our comments: the standalone agent (default 5 s drift check) compares what
// nft lists for each of its rules and base chains with what it listed right after writing them,
// so a rule replaced by hand under the same comment, a rule inserted with a copied comment, a
// changed chain policy and a base chain recreated at another priority are all repaired within
// 10 s, checked by real packets where the change loosens.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { sh } from "../support/exec.js";
import { createTopology, nftIn, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";

const POLICY = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: web-only}
spec:
  mode: Enforce
  rules:
    - name: web
      action: Allow
      to: {cidrs: ["192.0.2.10"]}
      ports: [{protocol: TCP, port: 443}]
`;

interface Rule {
  chain: string;
  handle: number;
  comment: string;
  expr: Record<string, unknown>[];
}

interface Chain {
  name: string;
  prio?: number;
  policy?: string;
}

function repairsOf(text: string): number {
  const line = text.split("\n").find((l) => l.startsWith("nftegress_drift_repairs_total "));
  return line ? Number(line.split(" ").pop()) : NaN;
}

describe("drift detection compares rule content, not only comments", () => {
  let t: Topology;
  let files: TempDir;
  let agent: AgentProcess;
  const list = (): { rules: Rule[]; chains: Chain[] } => {
    const r = sh("ip", ["netns", "exec", t.node, "nft", "-j", "-t", "list", "ruleset", "inet"]);
    const items = (JSON.parse(r.stdout) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
    const ours = (o: Record<string, unknown> | undefined) => o !== undefined && o["table"] === "nftegress";
    return {
      rules: items.filter((i) => ours(i["rule"])).map((i) => i["rule"] as unknown as Rule),
      chains: items.filter((i) => ours(i["chain"])).map((i) => i["chain"] as unknown as Chain),
    };
  };
  const nft = (script: string) => nftIn(t.node, script);
  const repairs = async () => repairsOf((await agent.get("/metrics")).text);
  /** Waits until `ok` holds, returns the seconds it took; fails after 10 s. */
  const within10s = async (what: string, ok: () => Promise<boolean>): Promise<number> => {
    const started = performance.now();
    await eventually(what, ok, (v) => v, 10_000);
    return (performance.now() - started) / 1000;
  };
  const denied = () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }).then((r) => r === "timeout");

  before(async () => {
    t = await createTopology("drc");
    files = tempDir();
    files.write("web.yaml", POLICY);
    // The default drift interval (5 s): "within 10 s" is the product's, not a test setting.
    agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state]);
    await eventually("readyz", () => agent.get("/readyz"), (r) => r.status === 200);
  });
  after(async () => {
    await agent?.stop("SIGKILL");
    await t?.close();
    files?.remove();
  });

  it("repairs nothing on an unchanged table (the listing is stable, counters included)", async () => {
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.ok(await denied());
    const start = await repairs();
    await new Promise((r) => setTimeout(r, 11_000));
    assert.equal(await repairs(), start, "two drift checks, no repair");
    assert.doesNotMatch(agent.log(), /content changed|properties changed/);
  });

  it("repairs a drop replaced by an accept under the same comment within 10 s", async () => {
    const drop = list().rules.find((r) => r.chain.endsWith("_deny") && r.expr.length === 1 && "drop" in (r.expr[0] ?? {}));
    assert.ok(drop, "the policy's final drop");
    nft(`replace rule inet nftegress ${drop.chain} handle ${drop.handle} accept comment "${drop.comment}"\n`);
    assert.ok(list().rules.some((r) => r.comment === drop.comment && "accept" in (r.expr[0] ?? {})), "replaced, same comment");
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "the replacement opened the denied destination");
    const secs = await within10s("denial back", denied);
    console.log(`# replaced rule repaired in ${secs.toFixed(1)} s`);
    const line = new RegExp(`chain ${drop.chain} rule \\d+ \\(${drop.comment.replace(/\./g, "\\.")}\\) content changed[^\n]*table changed outside nftegress, repaired`);
    await eventually("logged", async () => agent.log(), (l) => line.test(l), 2000);
  });

  it("repairs a rule inserted with a copied comment within 10 s", async () => {
    const first = list().rules.find((r) => r.chain === "output");
    assert.ok(first);
    nft(`insert rule inet nftegress output ip daddr 192.0.2.30 accept comment "${first.comment}"\n`);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "the inserted accept opened it");
    const secs = await within10s("denial back", denied);
    console.log(`# inserted rule removed in ${secs.toFixed(1)} s`);
    assert.equal(list().rules.filter((r) => r.comment === first.comment).length, 1, "the copy is gone");
  });

  it("restores a changed chain policy and a base chain recreated at another priority within 10 s", async () => {
    nft("chain inet nftegress output { policy drop; }\n");
    assert.equal(list().chains.find((c) => c.name === "output")?.policy, "drop");
    let secs = await within10s("policy accept again", async () => list().chains.find((c) => c.name === "output")?.policy === "accept");
    console.log(`# chain policy restored in ${secs.toFixed(1)} s`);
    await eventually("logged", async () => agent.log(), (l) => /chain output properties changed/.test(l), 2000);
    // The same rules and comments, in a chain hooked at another priority.
    const rules = list().rules.filter((r) => r.chain === "output");
    const text = rules.map((r) => {
      const e = r.expr[0] ?? {};
      const [verb, arg] = Object.entries(e)[0] ?? ["", {}];
      return `add rule inet nftegress output ${verb} ${(arg as { target: string }).target} comment "${r.comment}"`;
    });
    nft(["flush chain inet nftegress output", "delete chain inet nftegress output", "add chain inet nftegress output { type filter hook output priority 10; policy accept; }", ...text, ""].join("\n"));
    assert.equal(list().chains.find((c) => c.name === "output")?.prio, 10);
    assert.deepEqual(list().rules.filter((r) => r.chain === "output").map((r) => r.comment), rules.map((r) => r.comment), "same comments");
    secs = await within10s("priority filter again", async () => list().chains.find((c) => c.name === "output")?.prio === 0);
    console.log(`# base chain priority restored in ${secs.toFixed(1)} s`);
    assert.deepEqual(list().rules.filter((r) => r.chain === "output").map((r) => r.comment), rules.map((r) => r.comment), "rules back in the recreated chain");
    assert.ok(await denied(), "still denied");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", "still allowed");
    assert.doesNotMatch(agent.log(), /drift repair failed/);
  });
});
