// Enforcement behaviours on real packets: IPv6, Reject, priority between policies, Deny rules,
// another tool's table, a failed transaction (revocation: revocation.test.ts).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmdirSync } from "node:fs";
import { cgroup2Root } from "../../src/host/cgroups.js";
import { cli, sh } from "../support/exec.js";
import { createTopology, nftIn, probeTcp, ruleset, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { RealNftExecutor } from "../../src/nft/executor.js";
import { NftTransactionError } from "../../src/nft/errors.js";
import { Syncer } from "../../src/agent/syncer.js";
import { policyDoc } from "../support/policy.js";

const policy = policyDoc;

describe("enforcement behaviours", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    t = await createTopology("beh");
    files = tempDir();
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  async function apply(text: string): Promise<void> {
    files.write("p.yaml", text);
    const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
  }

  it("enforces IPv6 destinations like IPv4", async () => {
    await apply(
      policy("v6", `  mode: Enforce
  rules:
    - name: v6-web
      action: Allow
      to: {cidrs: ["2001:db8:1::/64", "192.0.2.10"]}
      ports: [{protocol: TCP, port: 443}]`),
    );
    assert.equal(await probeTcp(t, "2001:db8:1::10", 443), "connected");
    assert.equal(await probeTcp(t, "2001:db8:1::20", 443), "connected");
    assert.equal(await probeTcp(t, "2001:db8:2::10", 443, { timeoutMs: 800 }), "timeout");
    assert.equal(await probeTcp(t, "2001:db8:1::10", 80, { timeoutMs: 800 }), "timeout");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
  });

  it("Reject makes a denied connect fail at once instead of timing out", async () => {
    await apply(
      policy("rej", `  mode: Enforce
  denyResponse: Reject
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}]}`),
    );
    const started = Date.now();
    const r = await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 3000 });
    const ms = Date.now() - started;
    assert.equal(r, "refused", "TCP gets a reset");
    // Before the SYN's first retransmit (1 s): an ICMP error alone often surfaces only then.
    assert.ok(ms < 900, `failed after ${ms} ms`);
    const v6 = await probeTcp(t, "2001:db8:2::10", 443, { timeoutMs: 3000 });
    assert.ok(v6 !== "connected" && v6 !== "timeout", `IPv6 reject: ${v6}`);
  });

  it("evaluates policies in priority order: the first matching rule decides", async () => {
    await apply(
      policy("first", `  priority: 10
  mode: Enforce
  defaultAction: Allow
  rules:
    - {name: deny-30, action: Deny, to: {cidrs: ["192.0.2.30"]}}
    - {name: allow-20-any-port, action: Allow, to: {cidrs: ["192.0.2.20"]}}`) +
        policy("second", `  priority: 20
  mode: Enforce
  defaultAction: Deny
  rules:
    - {name: allow-30, action: Allow, to: {cidrs: ["192.0.2.30"]}}
    - {name: deny-10-ssh, action: Deny, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 22}]}
    - {name: web, action: Allow, ports: [{protocol: TCP, port: 443}]}`),
    );
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout", "first policy's Deny wins over the second's Allow");
    assert.equal(await probeTcp(t, "192.0.2.20", 22), "connected", "first policy's Allow wins over the second's default Deny");
    assert.equal(await probeTcp(t, "192.0.2.10", 22, { timeoutMs: 800 }), "timeout", "second policy's Deny rule");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", "second policy's Allow rule");
    assert.equal(await probeTcp(t, "192.0.2.10", 80, { timeoutMs: 800 }), "timeout", "default Deny of the second policy");
    const s = JSON.parse((await cli(["status", "--netns", t.node, "-o", "json", "--state-dir", files.state])).stdout) as { policies: { name: string; denied: { packets: number } }[] };
    assert.ok((s.policies.find((p) => p.name === "first")?.denied.packets ?? 0) >= 1);
    assert.ok((s.policies.find((p) => p.name === "second")?.denied.packets ?? 0) >= 2);
  });

  it("an Audit policy never changes a verdict, even where it would deny", async () => {
    await apply(
      policy("audit-first", `  priority: 1
  mode: Audit
  defaultAction: Deny
  rules:
    - {name: only-20, action: Allow, to: {cidrs: ["192.0.2.20"]}}`) +
        policy("enforced", `  priority: 50
  mode: Enforce
  defaultAction: Deny
  rules:
    - {name: only-10, action: Allow, to: {cidrs: ["192.0.2.10"]}}`),
    );
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", "Audit would deny, the Enforce policy allows");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "Audit allows, the Enforce policy denies");
    const s = JSON.parse((await cli(["status", "--netns", t.node, "-o", "json", "--state-dir", files.state])).stdout) as { policies: { name: string; wouldDeny: { packets: number }; denied: { packets: number } }[] };
    assert.ok((s.policies.find((p) => p.name === "audit-first")?.wouldDeny.packets ?? 0) >= 1);
    assert.ok((s.policies.find((p) => p.name === "enforced")?.denied.packets ?? 0) >= 1);
  });

  it("matches the original destination of NATed traffic (ct original)", async () => {
    // A Service-like DNAT in another table: 192.0.2.99:443 -> 192.0.2.10:443.
    nftIn(t.node, "table ip svc {\n chain out {\n type nat hook output priority -100; policy accept;\n ip daddr 192.0.2.99 tcp dport 443 dnat to 192.0.2.10:443\n }\n}\n");
    try {
      await apply(policy("vip-only", `  mode: Enforce
  rules:
    - {name: service, action: Allow, to: {cidrs: ["192.0.2.99"]}, ports: [{protocol: TCP, port: 443}]}`));
      assert.equal(await probeTcp(t, "192.0.2.99", 443), "connected", "allowed by its original destination");
      assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 800 }), "timeout", "the endpoint itself is not allowed");
      await apply(policy("vip-denied", `  mode: Enforce
  defaultAction: Allow
  rules:
    - {name: service, action: Deny, to: {cidrs: ["192.0.2.99"]}}`));
      assert.equal(await probeTcp(t, "192.0.2.99", 443, { timeoutMs: 800 }), "timeout", "denied by its original destination");
      assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    } finally {
      sh("ip", ["netns", "exec", t.node, "nft", "delete", "table", "ip", "svc"]);
    }
  });

  it("matches the sending socket's cgroup v2 path", async (ctx) => {
    const root = cgroup2Root();
    if (!root) return ctx.skip("no cgroup v2 hierarchy on this host");
    const name = `nftegress-test-${process.pid}`;
    const dir = `${root}/${name}`;
    mkdirSync(dir);
    try {
      await apply(policy("by-cgroup", `  mode: Enforce
  rules:
    - {name: backup-job, action: Allow, cgroups: [${name}], to: {cidrs: ["192.0.2.20"]}, ports: [{protocol: TCP, port: 443}]}
    - {name: missing, action: Allow, cgroups: [${name}-absent], ports: [{protocol: TCP, port: 22}]}`));
      assert.equal(await probeTcp(t, "192.0.2.20", 443, { cgroup: dir }), "connected", "a process in the cgroup");
      assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "a process outside it");
      assert.equal(await probeTcp(t, "192.0.2.20", 22, { timeoutMs: 800 }), "timeout", "a rule whose cgroup does not exist matches nothing");
    } finally {
      rmdirSync(dir);
    }
  });

  it("leaves another tool's table alone: its drop still wins over our accept", async () => {
    nftIn(t.node, "table ip othertool {\n chain out {\n type filter hook output priority 100; policy accept;\n ip daddr 192.0.2.20 tcp dport 443 counter drop\n }\n}\n");
    const otherBefore = sh("ip", ["netns", "exec", t.node, "nft", "list", "table", "ip", "othertool"]).stdout;
    await apply(policy("allow-all-web", `  mode: Enforce
  rules:
    - {name: web, action: Allow, ports: [{protocol: TCP, port: 443}]}`));
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "the other table's drop is final");
    const r = await cli(["cleanup", "--netns", t.node, "--state-dir", files.state]);
    assert.equal(r.code, 0);
    const otherAfter = sh("ip", ["netns", "exec", t.node, "nft", "list", "table", "ip", "othertool"]).stdout;
    assert.equal(otherAfter.replace(/packets \d+ bytes \d+/g, ""), otherBefore.replace(/packets \d+ bytes \d+/g, ""), "other table unchanged by apply and cleanup");
    sh("ip", ["netns", "exec", t.node, "nft", "delete", "table", "ip", "othertool"]);
  });

  it("a transaction the kernel refuses leaves the previous ruleset in place", async () => {
    await apply(policy("keep", `  mode: Enforce
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}]}`));
    const before = ruleset(t.node);
    const syncer = new Syncer(new RealNftExecutor({ netns: t.node }));
    const broken = {
      comment: "broken",
      chains: [{ name: "output", base: { type: "filter", hook: "output", priority: "filter", policy: "accept" } as const, rules: [{ expr: "ip daddr @no_such_set accept", comment: "broken" }] }],
      sets: [],
      counters: [],
    };
    await assert.rejects(syncer.sync(broken), (e: unknown) => e instanceof NftTransactionError && /no_such_set|No such file/.test(e.message + e.stderr));
    assert.equal(ruleset(t.node), before, "ruleset unchanged byte for byte");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "still enforced");
  });
});

