// A real Prometheus scrapes a standalone agent whose node sends allowed traffic, traffic an
// Enforce policy denies and traffic an Audit policy would deny; every PromQL expression of the
// shipped dashboard is then evaluated through Prometheus' HTTP API the way Grafana sends it
// (instant for stat and table targets, range for time series and annotations, the label-values
// API for variables). Each must return data, or be listed below with why it cannot here.
// Also: the top-K gauges keep Enforce denials and Audit would-denies apart, per policy, on real
// packets (issue 15: 8 denied + 16 would-deny to one destination were exported as 24 denied),
// and `promtool check metrics` judges the exposition.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { ROOT, sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";
import { startPrometheus, type Prometheus, type Series } from "../support/prometheus.js";
import { checkMetrics } from "../support/promtool.js";

const DASHBOARD = join(ROOT, "charts", "nftegress", "dashboards", "nftegress.json");
const NODE = "prom-node";
/** Grafana's $__rate_interval for a 1 s scrape interval and a 1 s step: max(1s + 1s, 4 * 1s). */
const RATE_INTERVAL = "4s";

// Audit first (lower priority number): it sees every packet, would-deny all to 198.51.100.40.
const WATCH = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: watch}
spec:
  mode: Audit
  priority: 10
  defaultAction: Allow
  rules:
    - {name: no-40, action: Deny, to: {cidrs: ["198.51.100.40"]}}
`;
// Enforce: 198.51.100.40:443 only for appuser (4242); root's connections there are denied.
const lock = (extra = "") => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: lock}
spec:
  mode: Enforce
  priority: 100
  defaultAction: Deny
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"${extra}]}, ports: [{protocol: TCP, port: 443}]}
    - {name: app, action: Allow, users: ["4242"], to: {cidrs: ["198.51.100.40"]}, ports: [{protocol: TCP, port: 443}]}
`;

/** Dashboard expressions that cannot return data against one standalone agent, and why. */
const CANNOT: Record<string, string> = {
  "Rollbacks by node": "a rollback needs an in-cluster agent that loses its API server after an apply; a standalone agent never rolls back",
  "Policy nodes by state (controller)": "needs a controller (nftegress_policy_nodes)",
  "Denied packets by policy (controller)": "needs a controller (nftegress_policy_denied_packets, nftegress_policy_would_deny_packets)",
  "Reconciles by result": "needs a controller (nftegress_controller_reconcile_total)",
  "Reconcile duration p99 and queue depth": "needs a controller (nftegress_controller_reconcile_duration_seconds, nftegress_controller_queue_depth)",
  Leader: "needs a controller (nftegress_controller_leader)",
};

interface DashQuery {
  /** Panel title, annotation or variable name. */
  title: string;
  expr: string;
  kind: "instant" | "range" | "labels";
  /** For label_values(): the label asked for. */
  label?: string;
}

const Panel = (v: unknown): v is { title?: string; panels?: unknown[]; targets?: { expr?: string; instant?: boolean }[] } => typeof v === "object" && v !== null;

/** Every PromQL expression of the dashboard, with how Grafana evaluates it. */
function dashboardQueries(d: { panels?: unknown[]; annotations?: { list?: { name?: string; expr?: string }[] }; templating?: { list?: { name?: string; definition?: string }[] } }): DashQuery[] {
  const out: DashQuery[] = [];
  const walk = (panels: unknown[] | undefined) => {
    for (const p of panels ?? []) {
      if (!Panel(p)) continue;
      for (const t of p.targets ?? []) if (typeof t.expr === "string") out.push({ title: p.title ?? "?", expr: t.expr, kind: t.instant === true ? "instant" : "range" });
      walk(p.panels);
    }
  };
  walk(d.panels);
  for (const a of d.annotations?.list ?? []) if (typeof a.expr === "string") out.push({ title: `annotation ${a.name ?? "?"}`, expr: a.expr, kind: "range" });
  for (const v of d.templating?.list ?? []) {
    const m = /^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(v.definition ?? "");
    if (m) out.push({ title: `variable ${v.name ?? "?"}`, expr: m[1] ?? "", kind: "labels", label: m[2] ?? "" });
  }
  return out;
}

/** Grafana's substitution: $node a single node, $policy "All" (its allValue .*). */
function substitute(expr: string, policy = ".*"): string {
  const s = expr.replaceAll("$__rate_interval", RATE_INTERVAL).replaceAll("$node", NODE).replaceAll("$policy", policy);
  assert.doesNotMatch(s, /\$/, `a template variable left in ${s}`);
  return s;
}

const finite = (series: Series[]) => series.flatMap((s) => s.values.map(([, v]) => v)).filter((v) => Number.isFinite(v));

function metricValue(text: string, name: string, labels: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

describe("Prometheus scraping a standalone agent: the dashboard's queries", () => {
  let t: Topology;
  let files: TempDir;
  let agent: AgentProcess;
  let prom: Prometheus;
  let start = 0;
  before(async () => {
    t = await createTopology("prm");
    files = tempDir();
    files.write("watch.yaml", WATCH);
    files.write("lock.yaml", lock());
    agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--drift-interval", "1", "--suspend-file", `${files.dir}/../suspend`, "--state-dir", files.state]);
    await eventually("agent ready", () => agent.get("/readyz"), (r) => r.status === 200);
    start = Math.floor(Date.now() / 1000) - 1;
    prom = await startPrometheus([{ address: `127.0.0.1:${agent.port}`, labels: { node: NODE } }]);
  });
  after(async () => {
    await prom?.stop();
    await agent?.stop("SIGKILL");
    await t?.close();
    files?.remove();
  });

  it("promtool itself reports a bad exposition (the lint check can fail)", () => {
    const bad = checkMetrics("# HELP x_requests a counter\n# TYPE x_requests counter\nx_requests 1\n");
    assert.equal(bad.code, 3);
    assert.ok(bad.problems.some((p) => /x_requests counter metrics should have "_total" suffix/.test(p)), bad.problems.join("\n"));
    assert.equal(checkMetrics("x{\n").code, 1, "unparsable text");
  });

  it("scrapes the agent, with every apply result at 0 before the first error", async () => {
    await eventually("target scraped", () => prom.query(`up{node="${NODE}"}`), (r) => finite(r)[0] === 1, 20_000);
    const invalid = await eventually("apply_total{invalid} scraped", () => prom.query('nftegress_apply_total{result="invalid"}'), (r) => r.length === 1, 10_000);
    assert.deepEqual(finite(invalid), [0], "born at 0, so increase() sees the first invalid file");
    // Events the dashboard shows: an invalid file, a drift repair, a policy change.
    files.write("bad.yaml", lock().replace("name: lock", "name: bad").replace('"192.0.2.10"', '"192.0.2.300"'));
    await eventually("invalid counted", () => prom.query('nftegress_apply_total{result="invalid"}'), (r) => finite(r)[0] === 1, 10_000);
    rmSync(join(files.dir, "bad.yaml"));
    sh("ip", ["netns", "exec", t.node, "nft", "flush", "ruleset"]);
    await eventually("drift repair scraped", () => prom.query("nftegress_drift_repairs_total"), (r) => (finite(r)[0] ?? 0) >= 1, 15_000);
    files.write("lock.yaml", lock(', "192.0.2.20"'));
    await eventually("generation 2 scraped", () => prom.query('nftegress_policy_applied_generation{policy="lock"}'), (r) => finite(r)[0] === 2, 10_000);
  });

  let denied = 0;
  let wouldDeny = 0;
  it("counts Enforce denials and Audit would-denies apart, per policy, on real packets", async () => {
    // Allowed: nothing counted. Root to 198.51.100.40:443: would-deny (watch) and denied (lock).
    // appuser to 198.51.100.40:443: would-deny only, connected.
    for (let i = 0; i < 3; i++) assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    for (let i = 0; i < 2; i++) assert.equal(await probeTcp(t, "198.51.100.40", 443, { timeoutMs: 400 }), "timeout");
    for (let i = 0; i < 3; i++) assert.equal(await probeTcp(t, "198.51.100.40", 443, { uid: 4242 }), "connected");
    // The agent reads the kernel's counters every 10 s.
    const m = await eventually(
      "counters read",
      async () => (await agent.get("/metrics")).text,
      (x) => (metricValue(x, "nftegress_denied_packets_total", 'policy="lock"') ?? 0) >= 2 && (metricValue(x, "nftegress_would_deny_packets_total", 'policy="watch"') ?? 0) >= 5,
      20_000,
    );
    const dest = 'destination="198.51.100.40",port="443",protocol="tcp"';
    denied = metricValue(m, "nftegress_denied_destination_packets", `policy="lock",${dest}`) ?? NaN;
    wouldDeny = metricValue(m, "nftegress_would_deny_destination_packets", `policy="watch",${dest}`) ?? NaN;
    // The top-K gauges match the policies' kernel counters (one destination each here).
    assert.equal(denied, metricValue(m, "nftegress_denied_packets_total", 'policy="lock"'), "nftegress_denied_destination_packets{policy=\"lock\"} = lock's denied counter");
    assert.equal(wouldDeny, metricValue(m, "nftegress_would_deny_packets_total", 'policy="watch"'), "nftegress_would_deny_destination_packets{policy=\"watch\"} = watch's would-deny counter");
    assert.ok(denied >= 2, `root's two SYNs denied (${denied})`);
    assert.ok(wouldDeny >= denied + 3, `the same SYNs plus appuser's three connections would-denied (${wouldDeny} vs ${denied})`);
    // Never summed, never under the other mode's name.
    assert.doesNotMatch(m, /^nftegress_denied_(destination_packets|packets_by_uid)\{policy="watch"/m);
    assert.doesNotMatch(m, /^nftegress_would_deny_(destination_packets|packets_by_uid)\{policy="lock"/m);
    assert.doesNotMatch(m, /^nftegress_(denied|would_deny)_destination_packets\{policy="[^"]+",destination="192\.0\.2\.10"/m, "allowed traffic is counted nowhere");
    assert.equal(metricValue(m, "nftegress_denied_packets_by_uid", 'policy="lock",uid="0",user=""'), denied);
    assert.equal(metricValue(m, "nftegress_would_deny_packets_by_uid", 'policy="watch",uid="0",user=""'), denied, "root's SYNs passed the Audit policy first");
    assert.ok((metricValue(m, "nftegress_would_deny_packets_by_uid", 'policy="watch",uid="4242",user="appuser"') ?? 0) >= 3);
    assert.equal(metricValue(m, "nftegress_denied_packets_by_uid", 'policy="lock",uid="4242",user="appuser"'), undefined, "appuser was allowed by lock");
    assert.deepEqual(checkMetrics(m), { code: 0, problems: [] }, "promtool check metrics");
    await eventually("Prometheus has the would-deny gauge", () => prom.query("nftegress_would_deny_destination_packets"), (r) => finite(r)[0] === wouldDeny, 10_000);
  });

  it("every dashboard expression returns data, or is listed with the reason it cannot", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Parameters<typeof dashboardQueries>[0];
    const qs = dashboardQueries(dashboard);
    // Nothing missed: as many expressions as "expr" keys anywhere in the file, plus variables.
    const exprKeys = (readFileSync(DASHBOARD, "utf8").match(/"expr":/g) ?? []).length;
    assert.equal(qs.filter((q) => q.kind !== "labels").length, exprKeys);
    assert.ok(qs.length >= 30, `${qs.length} queries`);
    const end = Math.ceil(Date.now() / 1000);
    const problems: string[] = [];
    const results = new Map<string, Series[]>();
    for (const q of qs) {
      if (q.kind === "labels") {
        const values = await prom.labelValues(q.label ?? "", substitute(q.expr));
        if (values.length === 0) problems.push(`${q.title}: label_values(${q.expr}, ${q.label ?? ""}) is empty`);
        results.set(q.title, [{ metric: Object.fromEntries(values.map((v) => [v, v])), values: [] }]);
        continue;
      }
      const expr = substitute(q.expr);
      const r = q.kind === "instant" ? await prom.query(expr, end) : await prom.queryRange(expr, start, end, 1);
      results.set(`${q.title}|${q.expr}`, r);
      const has = finite(r).length > 0;
      const reason = CANNOT[q.title];
      if (reason === undefined && !has) problems.push(`${q.title}: no data for ${expr}`);
      if (reason !== undefined && has) problems.push(`${q.title}: listed as impossible here (${reason}) but returned data for ${expr}`);
    }
    assert.deepEqual(problems, []);
    // Every exemption names a panel that exists.
    for (const title of Object.keys(CANNOT)) assert.ok(qs.some((q) => q.title === title), `no panel ${title}`);
    // The values the issue was about.
    const one = (title: string) => {
      const hit = [...results.entries()].find(([k]) => k.startsWith(`${title}|`));
      assert.ok(hit, title);
      return hit[1];
    };
    assert.ok((finite(one("Apply errors (1h)"))[0] ?? 0) > 0, "the first invalid file shows in Apply errors (1h)");
    assert.ok(one("Apply errors by node").some((s) => s.metric["result"] === "invalid" && s.metric["node"] === NODE));
    assert.ok((finite(one("Drift repairs (1h)"))[0] ?? 0) > 0);
    assert.deepEqual(finite(one("Agents reporting")), [1]);
    assert.deepEqual(Object.keys(results.get("variable policy")?.[0]?.metric ?? {}).sort(), ["lock", "watch"]);
    assert.deepEqual(Object.keys(results.get("variable node")?.[0]?.metric ?? {}), [NODE]);
    // Prometheus drops empty labels (user="" of a uid without a passwd entry).
    const rows = (title: string): Record<string, string | number>[] =>
      one(title)
        .map((s): Record<string, string | number> => ({ ...s.metric, packets: s.values[0]?.[1] ?? NaN }))
        .sort((a, b) => String(a["uid"]).localeCompare(String(b["uid"])));
    assert.deepEqual(rows("Top denied destinations (Enforce)"), [{ policy: "lock", destination: "198.51.100.40", port: "443", protocol: "tcp", packets: denied }]);
    assert.deepEqual(rows("Top would-deny destinations (Audit)"), [{ policy: "watch", destination: "198.51.100.40", port: "443", protocol: "tcp", packets: wouldDeny }]);
    assert.deepEqual(rows("Denials by user (Enforce)"), [{ policy: "lock", uid: "0", packets: denied }]);
    assert.deepEqual(rows("Would-deny by user (Audit)"), [
      { policy: "watch", uid: "0", packets: denied },
      { policy: "watch", uid: "4242", user: "appuser", packets: wouldDeny - denied },
    ]);
  });

  it("the top tables follow $policy", async () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Parameters<typeof dashboardQueries>[0];
    const tables = dashboardQueries(dashboard).filter((q) => /destination_packets|packets_by_uid/.test(q.expr));
    assert.equal(tables.length, 4);
    for (const q of tables) {
      const own = /would_deny/.test(q.expr) ? "watch" : "lock";
      const other = own === "watch" ? "lock" : "watch";
      assert.ok((await prom.query(substitute(q.expr, own))).length > 0, `${q.title} with $policy=${own}`);
      assert.deepEqual(await prom.query(substitute(q.expr, other)), [], `${q.title} with $policy=${other}`);
    }
  });

  it("a policy switched from Audit to Enforce starts its denied top-K empty: its would-denies stay out", async () => {
    files.write("watch.yaml", WATCH.replace("mode: Audit", "mode: Enforce"));
    await eventually("watch enforced", () => probeTcp(t, "198.51.100.40", 443, { uid: 4242, timeoutMs: 400 }), (r) => r === "timeout", 10_000);
    const m = await eventually(
      "counters read",
      async () => (await agent.get("/metrics")).text,
      (x) => (metricValue(x, "nftegress_denied_packets_total", 'policy="watch"') ?? 0) >= 1 && x.includes('nftegress_denied_packets_by_uid{policy="watch"'),
      20_000,
    );
    const dest = 'destination="198.51.100.40",port="443",protocol="tcp"';
    const deniedNow = metricValue(m, "nftegress_denied_packets_total", 'policy="watch"');
    assert.equal(metricValue(m, "nftegress_denied_destination_packets", `policy="watch",${dest}`), deniedNow, "only packets denied since the switch");
    assert.equal(metricValue(m, "nftegress_denied_packets_by_uid", 'policy="watch",uid="4242",user="appuser"'), deniedNow);
    assert.equal(metricValue(m, "nftegress_denied_packets_by_uid", 'policy="watch",uid="0",user=""'), undefined, "root sent nothing since the switch");
    assert.doesNotMatch(m, /^nftegress_would_deny_(destination_packets|packets_by_uid)\{policy="watch"/m, "watch is no longer an Audit policy");
  });
});
