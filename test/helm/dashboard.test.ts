// The Grafana dashboard shipped in the chart: every PromQL query uses only metric names the
// project exports (parsed from src/metrics/metrics.ts, histograms with their _bucket/_sum/
// _count series) and only their label names (plus the target labels Prometheus and our
// monitors add), and the panels the design asks for are there.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { CHART } from "./support/tools.js";

const METRICS_TS = join(ROOT, "src", "metrics", "metrics.ts");
const DASHBOARD = join(CHART, "dashboards", "nftegress.json");

/** Metric names and label names the project exports, read from its source. */
function exported(): { metrics: Set<string>; labels: Set<string> } {
  const src = readFileSync(METRICS_TS, "utf8");
  const metrics = new Set([...src.matchAll(/"(nftegress_[a-z0-9_]+)"/g)].map((m) => m[1] ?? ""));
  for (const m of src.matchAll(/new Histogram\(\{\s*name:\s*"([a-z0-9_]+)"/g)) {
    for (const suffix of ["_bucket", "_sum", "_count"]) metrics.add(`${m[1] ?? ""}${suffix}`);
  }
  const labels = new Set<string>();
  for (const m of src.matchAll(/labelNames:\s*\[([^\]]*)\]/g)) for (const l of (m[1] ?? "").matchAll(/"([a-zA-Z_]+)"/g)) labels.add(l[1] ?? "");
  return { metrics, labels };
}

/** Labels a target gets besides the metric's own: Prometheus', the Operator's, our relabeling. */
const TARGET_LABELS = ["job", "instance", "namespace", "pod", "service", "container", "endpoint", "node", "le"];

const KEYWORDS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan", "atan2"]);

/** The metric names a PromQL expression selects. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*/g, " ") // Grafana variables
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, " ") // string literals
    .replace(/\{[^}]*\}/g, " ") // label matchers
    .replace(/\[[^\]]*\]/g, " ") // ranges and subqueries
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ") // label lists
    .replace(/\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)?\b/g, " "); // numbers, durations
  const out: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const name = m[0];
    const rest = bare.slice((m.index ?? 0) + name.length).trimStart();
    if (rest.startsWith("(") || KEYWORDS.has(name.toLowerCase())) continue; // a function or aggregation
    out.push(name);
  }
  return out;
}

/** The label names an expression groups or matches by. */
function labelNames(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  const out: string[] = [];
  for (const m of noStrings.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) out.push(...(m[1] ?? "").split(",").map((s) => s.trim()).filter(Boolean));
  for (const m of noStrings.matchAll(/\{([^}]*)\}/g)) out.push(...[...(m[1] ?? "").matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((x) => x[1] ?? ""));
  return out;
}

interface Query {
  where: string;
  expr: string;
}

/** Every PromQL query of the dashboard: targets, annotations, and label_values() of variables. */
function queries(dashboard: unknown): Query[] {
  const out: Query[] = [];
  const walk = (v: unknown, where: string): void => {
    if (Array.isArray(v)) return v.forEach((x, i) => walk(x, `${where}[${i}]`));
    if (typeof v !== "object" || v === null) return;
    const o = v as Record<string, unknown>;
    const title = typeof o["title"] === "string" ? ` "${o["title"]}"` : typeof o["name"] === "string" ? ` "${o["name"]}"` : "";
    for (const [k, x] of Object.entries(o)) {
      if (k === "expr" && typeof x === "string") out.push({ where: `${where}${title}`, expr: x });
      else if ((k === "definition" || k === "query") && typeof x === "string" && x.startsWith("label_values(")) {
        const m = /^label_values\(\s*(.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(x);
        assert.ok(m, `${where}: cannot parse ${x}`);
        out.push({ where: `${where}${title}`, expr: `${m[1] ?? ""} by (${m[2] ?? ""})` });
      } else walk(x, `${where}.${k}`);
    }
  };
  walk(dashboard, "");
  return out;
}

describe("Grafana dashboard", () => {
  const dashboard: unknown = JSON.parse(readFileSync(DASHBOARD, "utf8"));
  const { metrics, labels } = exported();

  it("finds metric names in PromQL (the check itself)", () => {
    assert.deepEqual(metricNames('sum by (policy, node) (rate(nftegress_denied_packets_total{node=~"$node",policy!="a b"}[$__rate_interval])) / on (node) group_left up'), ["nftegress_denied_packets_total", "up"]);
    assert.deepEqual(metricNames("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) * 1e3 > bool 0.5 or vector(0)"), ["x_bucket"]);
    assert.deepEqual(metricNames("max(nftegress_a) * 1000 offset 5m"), ["nftegress_a"]);
    assert.ok(metrics.has("nftegress_denied_packets_total") && metrics.has("nftegress_apply_duration_seconds_bucket") && metrics.has("nftegress_controller_leader"), "parsed src/metrics/metrics.ts");
    assert.ok(!metrics.has("nftegress_denied_packets_total_bucket"), "only histograms get _bucket");
  });

  it("queries only metrics the project exports, by their own labels", () => {
    const qs = queries(dashboard);
    assert.ok(qs.length >= 20, `found ${qs.length} queries`);
    const allowedLabels = new Set([...labels, ...TARGET_LABELS]);
    const problems: string[] = [];
    for (const q of qs) {
      const names = metricNames(q.expr);
      if (names.length === 0) problems.push(`${q.where}: no metric in ${q.expr}`);
      for (const n of names) if (!metrics.has(n)) problems.push(`${q.where}: unknown metric ${n} in ${q.expr}`);
      for (const l of labelNames(q.expr)) if (!allowedLabels.has(l)) problems.push(`${q.where}: unknown label ${l} in ${q.expr}`);
    }
    assert.deepEqual(problems, []);
  });

  it("shows denials per policy and node, destinations, users, Audit, applies, drift, rollbacks", () => {
    const used = new Set(queries(dashboard).flatMap((q) => metricNames(q.expr)));
    for (const m of [
      "nftegress_denied_packets_total",
      "nftegress_would_deny_packets_total",
      "nftegress_denied_destination_packets",
      "nftegress_denied_packets_by_uid",
      "nftegress_would_deny_destination_packets",
      "nftegress_would_deny_packets_by_uid",
      "nftegress_apply_total",
      "nftegress_apply_duration_seconds_bucket",
      "nftegress_drift_repairs_total",
      "nftegress_rollbacks_total",
    ]) {
      assert.ok(used.has(m), `the dashboard uses ${m}`);
    }
    const denials = queries(dashboard).find((q) => q.expr.includes("nftegress_denied_packets_total") && /by \(policy, node\)/.test(q.expr));
    assert.ok(denials, "denials over time per policy and node");
  });

  it("filters every query on a per-policy metric by $policy (the top tables included)", () => {
    // The metrics with a policy label (src/metrics/metrics.ts).
    const perPolicy = [
      "nftegress_denied_packets_total",
      "nftegress_denied_bytes_total",
      "nftegress_would_deny_packets_total",
      "nftegress_would_deny_bytes_total",
      "nftegress_denied_destination_packets",
      "nftegress_denied_packets_by_uid",
      "nftegress_would_deny_destination_packets",
      "nftegress_would_deny_packets_by_uid",
      "nftegress_policy_applied_generation",
      "nftegress_policy_last_change_timestamp_seconds",
      "nftegress_policy_denied_packets",
      "nftegress_policy_would_deny_packets",
      "nftegress_policy_nodes",
    ];
    for (const m of perPolicy) assert.ok(metrics.has(m), `${m} is exported`);
    const unfiltered = queries(dashboard)
      .filter((q) => !q.where.includes(".templating")) // the variables' own values queries
      .filter((q) => metricNames(q.expr).some((n) => perPolicy.includes(n)) && !/policy=~"\$policy"/.test(q.expr))
      .map((q) => `${q.where}: ${q.expr}`);
    assert.deepEqual(unfiltered, []);
  });

  it("overlays policy changes from nftegress_policy_last_change_timestamp_seconds", () => {
    const list = (dashboard as { annotations?: { list?: Record<string, unknown>[] } }).annotations?.list ?? [];
    const changes = list.find((a) => typeof a["expr"] === "string" && a["expr"].includes("nftegress_policy_last_change_timestamp_seconds"));
    assert.ok(changes, "an annotation query on the last-change timestamp");
    assert.equal(changes["enable"], true);
    // The gauge holds the change time in seconds; Grafana places the marker at the value (ms).
    assert.equal(changes["useValueForTime"], true);
    assert.match(String(changes["expr"]), /\* 1000$/);
  });

  it("is a dashboard the Grafana sidecar can import: uid, title, datasource variable, unique panel ids", () => {
    const d = dashboard as { uid?: string; title?: string; panels?: { id?: number; gridPos?: unknown }[]; templating?: { list?: { name?: string; type?: string }[] } };
    assert.equal(d.uid, "nftegress");
    assert.equal(d.title, "nftegress");
    assert.ok(d.templating?.list?.some((v) => v.name === "datasource" && v.type === "datasource"));
    const ids = (d.panels ?? []).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok((d.panels ?? []).every((p) => typeof p.id === "number" && p.gridPos !== undefined));
  });
});
