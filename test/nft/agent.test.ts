// The standalone agent on real nftables: applies on start and on every file change, keeps the
// last good state of a file that turns invalid, repairs drift after `nft flush ruleset` and a
// set element deleted or added by hand, serves metrics with the contract names, and on SIGTERM
// exits promptly leaving enforcement in place.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmdirSync, writeFileSync, rmSync } from "node:fs";
import { cgroup2Root } from "../../src/host/cgroups.js";
import { cli, sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";
import { checkMetrics } from "../support/promtool.js";

const policy = (allow: string[]) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: web-only}
spec:
  mode: Enforce
  rules:
    - name: web
      action: Allow
      to: {cidrs: [${allow.map((a) => `"${a}"`).join(", ")}]}
      ports: [{protocol: TCP, port: 443}]
`;

const METRICS = [
  "nftegress_denied_packets_total",
  "nftegress_denied_bytes_total",
  "nftegress_would_deny_packets_total",
  "nftegress_denied_destination_packets",
  "nftegress_denied_packets_by_uid",
  "nftegress_would_deny_destination_packets",
  "nftegress_would_deny_packets_by_uid",
  "nftegress_apply_total",
  "nftegress_apply_duration_seconds",
  "nftegress_policy_applied_generation",
  "nftegress_policy_last_change_timestamp_seconds",
  "nftegress_drift_repairs_total",
  "nftegress_rollbacks_total",
  "nftegress_ruleset_elements",
];

function metric(text: string, name: string, labels = ""): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ""} `) || (!labels && l.startsWith(`${name}{`)));
  return line ? Number(line.split(" ").pop()) : NaN;
}

describe("standalone agent", () => {
  let t: Topology;
  let files: TempDir;
  let agent: AgentProcess;
  before(async () => {
    t = await createTopology("agt");
    files = tempDir();
    files.write("web.yaml", policy(["192.0.2.10"]));
    agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--drift-interval", "2", "--suspend-file", `${files.dir}/../suspend`, "--state-dir", files.state]);
    started = Date.now();
  });
  let started = 0;
  after(async () => {
    await agent?.stop("SIGKILL");
    await t?.close();
    files?.remove();
  });

  it("applies the directory on start and becomes ready, with every counter exported from the first scrape", async () => {
    await eventually("readyz", () => agent.get("/readyz"), (r) => r.status === 200);
    // Before the first counters tick (10 s after start): the first apply's counters, at 0 in
    // a new table, and every apply result at 0.
    const m = (await agent.get("/metrics")).text;
    assert.ok(Date.now() - started < 9_000, `scraped ${Date.now() - started} ms after start`);
    for (const name of ["nftegress_denied_packets_total", "nftegress_denied_bytes_total", "nftegress_would_deny_packets_total", "nftegress_would_deny_bytes_total"]) {
      assert.equal(metric(m, name, 'policy="web-only"'), 0, `${name}{policy="web-only"} exported at 0`);
    }
    for (const result of ["success", "failure", "invalid"]) assert.ok(metric(m, "nftegress_apply_total", `result="${result}"`) >= 0, `apply_total{result="${result}"} exported`);
    assert.equal(metric(m, "nftegress_apply_total", 'result="failure"'), 0);
    assert.equal(metric(m, "nftegress_apply_total", 'result="invalid"'), 0);
    assert.ok(metric(m, "nftegress_apply_total", `result="success"`) >= 1);
    assert.equal((await agent.get("/healthz")).status, 200);
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout");
  });

  it("applies a changed file within seconds", async () => {
    files.write("web.yaml", policy(["192.0.2.10", "192.0.2.20"]));
    await eventually("192.0.2.20 allowed", () => probeTcp(t, "192.0.2.20", 443, { timeoutMs: 500 }), (r) => r === "connected", 5000);
    const m = (await agent.get("/metrics")).text;
    assert.equal(metric(m, "nftegress_policy_applied_generation", 'policy="web-only"'), 2, "generation bumped by the change");
  });

  it("keeps the last good state when a file turns invalid, and says so", async () => {
    files.write("web.yaml", policy(["192.0.2.300"]));
    const line = /"error":"[^"]*web\.yaml: document 1: EgressPolicy\/web-only: spec\.rules\[0\]\.to\.cidrs\[0\]: .*192\.0\.2\.300.* is not an IPv4[^\n]*"msg":"policy file invalid, keeping its last good state"/;
    await eventually("error logged", async () => agent.log(), (l) => line.test(l), 5000);
    assert.equal(await probeTcp(t, "192.0.2.20", 443), "connected", "last good state still enforced");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout");
    const m = (await agent.get("/metrics")).text;
    assert.ok(metric(m, "nftegress_apply_total", 'result="invalid"') >= 1);
    files.write("web.yaml", policy(["192.0.2.10"]));
    await eventually("192.0.2.20 denied again", () => probeTcp(t, "192.0.2.20", 443, { timeoutMs: 500 }), (r) => r === "timeout", 5000);
  });

  it("repairs drift after nft flush ruleset", async () => {
    sh("ip", ["netns", "exec", t.node, "nft", "flush", "ruleset"]);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "the flush opened everything");
    await eventually("table restored", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), (r) => r === "timeout", 10_000);
    await eventually("repair counted", async () => metric((await agent.get("/metrics")).text, "nftegress_drift_repairs_total"), (v) => v >= 1, 5000);
    assert.match(agent.log(), /table changed outside nftegress, repaired/);
  });

  it("puts back a set element deleted by hand and removes one added by hand", async () => {
    const nft = (...args: string[]) => sh("ip", ["netns", "exec", t.node, "nft", ...args]);
    const repairs = () => agent.get("/metrics").then((r) => metric(r.text, "nftegress_drift_repairs_total"));
    // Nothing changed by hand: several rounds of audits (IPv4 and IPv6 sets) repair nothing.
    files.write("web.yaml", policy(["192.0.2.10", "2001:db8:10::/48", "2001:db8:20::1"]));
    await eventually("IPv6 set applied", async () => nft("-t", "list", "sets", "inet").stdout, (o) => /set r\w+_6_\d+ \{/.test(o), 5000);
    const quiet = await repairs();
    await new Promise((r) => setTimeout(r, 7000));
    assert.equal(await repairs(), quiet, "an unchanged table is never 'repaired'");
    const before = quiet;
    // The static set holding 192.0.2.10 (its name is a hash): the one whose listing shows it.
    const names = [...nft("-t", "list", "sets", "inet").stdout.matchAll(/set (\S+) \{/g)].map((m) => m[1] ?? "");
    const set = names.find((n) => nft("list", "set", "inet", "nftegress", n).stdout.includes("192.0.2.10"));
    assert.ok(set, `no set holds 192.0.2.10 among ${names.join(", ")}`);
    assert.equal(nft("delete", "element", "inet", "nftegress", set, "{ 192.0.2.10 }").code, 0);
    assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 500 }), "timeout", "the deleted element denies at once");
    await eventually("element put back", () => probeTcp(t, "192.0.2.10", 443, { timeoutMs: 500 }), (r) => r === "connected", 20_000);
    assert.equal(nft("add", "element", "inet", "nftegress", set, "{ 192.0.2.30 }").code, 0);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "the foreign element allows at once");
    await eventually("foreign element removed", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), (r) => r === "timeout", 20_000);
    assert.ok((await repairs()) >= before + 2, "both repairs counted");
    assert.match(agent.log(), /"missing":1,"extra":0[^\n]*set elements changed outside nftegress, repaired/);
    assert.match(agent.log(), /"missing":0,"extra":1[^\n]*set elements changed outside nftegress, repaired/);
    files.write("web.yaml", policy(["192.0.2.10"]));
  });

  it("serves every contract metric with the kernel's counts", async () => {
    const m = await eventually("denied counter", async () => (await agent.get("/metrics")).text, (text) => metric(text, "nftegress_denied_packets_total", 'policy="web-only"') >= 1, 15_000);
    for (const name of METRICS) assert.ok(m.includes(`# TYPE ${name} `), `${name} exported`);
    assert.ok(metric(m, "nftegress_ruleset_elements") >= 1);
    assert.ok(m.includes('nftegress_denied_destination_packets{policy="web-only",destination="192.0.2.30",port="443",protocol="tcp"}'), "top denied destination exported, by policy");
    assert.ok(m.includes('nftegress_denied_packets_by_uid{policy="web-only",uid="0",user=""}'), "denials by uid exported, by policy");
    for (const line of m.split("\n").filter((l) => l.startsWith("# TYPE nftegress_"))) {
      const [, , name, type] = line.split(" ");
      if (type === "counter") assert.ok(name?.endsWith("_total"), `${name}: counters end in _total`);
      else assert.ok(!name?.endsWith("_total"), `${name}: only counters end in _total`);
    }
    // Prometheus' own linter on the exposition with every kind of series present.
    assert.deepEqual(checkMetrics(m), { code: 0, problems: [] });
  });

  it("break-glass: the suspend file makes the table dormant, and removing it restores enforcement", async () => {
    const suspend = `${files.dir}/../suspend`;
    writeFileSync(suspend, "incident 42\n");
    await eventually("suspended", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), (r) => r === "connected", 5000);
    const st = await cli(["status", "--netns", t.node, "--state-dir", files.state]);
    assert.match(st.stdout, /is dormant \(suspended\)/);
    assert.match(agent.log(), /enforcement suspended, table dormant/);
    rmSync(suspend);
    await eventually("enforced again", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), (r) => r === "timeout", 5000);
  });

  it("never undoes a dormant flag set by someone else", async () => {
    sh("ip", ["netns", "exec", t.node, "nft", "add", "table", "inet", "nftegress", "{ flags dormant; }"]);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
    files.write("web.yaml", policy(["192.0.2.10", "192.0.2.40"]));
    await new Promise((r) => setTimeout(r, 5000));
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "still dormant after a policy change and two drift checks");
    assert.doesNotMatch(agent.log(), /drift repair failed/, "the drift checks and the element audit leave a dormant table alone quietly");
    assert.match(sh("ip", ["netns", "exec", t.node, "nft", "-t", "list", "table", "inet", "nftegress"]).stdout, /flags dormant/);
    sh("ip", ["netns", "exec", t.node, "nft", "add", "table", "inet", "nftegress"]);
    await eventually("enforced once the admin clears it", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 500 }), (r) => r === "timeout", 5000);
    files.write("web.yaml", policy(["192.0.2.10"]));
  });

  it("re-applies when a cgroup named by a rule appears or vanishes", async (ctx) => {
    const root = cgroup2Root();
    if (!root) return ctx.skip("no cgroup v2 hierarchy on this host");
    const name = `nftegress-agent-${process.pid}`;
    files.write("cg.yaml", policy(["192.0.2.10"]).replace("web-only", "by-cgroup").replace("name: web", `name: job\n      cgroups: [${name}]`).replace('"192.0.2.10"', '"192.0.2.20"'));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 500 }), "timeout", "no such cgroup yet: the rule matches nothing");
    mkdirSync(`${root}/${name}`);
    try {
      await eventually("cgroup rule active", () => probeTcp(t, "192.0.2.20", 443, { cgroup: `${root}/${name}`, timeoutMs: 500 }), (r) => r === "connected", 5000);
    } finally {
      rmdirSync(`${root}/${name}`);
      rmSync(`${files.dir}/cg.yaml`);
    }
  });

  it("exits promptly on SIGTERM and leaves enforcement in place", async () => {
    const r = await agent.stop("SIGTERM");
    assert.equal(r.code, 0);
    assert.ok(r.ms < 3000, `exited after ${r.ms} ms`);
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout", "fail-static: still enforced");
    assert.match(agent.log(), /stopping; the applied ruleset stays enforced/);
  });
});
