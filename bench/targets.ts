// The design's performance targets (section 7) as data, and the summary table of the latest
// results files against them. bench/README.md holds this table between two markers;
// `node dist/bench/summary.js --write` regenerates it from bench/results/*.json, and a unit
// test fails when the two differ, so the README never claims what the files do not say.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";

/** One results file: the figures at the top level, `meta` with the run's date, size and machine. */
export const Result = z.looseObject({
  meta: z.looseObject({
    date: z.string(),
    smoke: z.boolean(),
    policies: z.number().optional(),
    machine: z.looseObject({ loadavg_at_start: z.number().optional(), loadavg_at_end: z.number().optional() }),
  }),
});
export type Result = z.infer<typeof Result>;

interface Target {
  benchmark: string;
  figure: string;
  /** How the target reads in the table. */
  text: string;
  /** null: context, no target. */
  holds: ((value: number, r: Result) => boolean) | null;
}

const atLeast = (x: number) => (v: number) => v >= x;
const below = (x: number) => (v: number) => v < x;

export const TARGETS: readonly Target[] = [
  { benchmark: "packet-path", figure: "throughput_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "packet-path", figure: "new_flow_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "packet-path", figure: "udp_rate_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "packet-path", figure: "naive_throughput_ratio", text: "(the collapse)", holds: null },
  // The same with --revocation-mark (opt-in; README, Revocation).
  { benchmark: "packet-path-mark", figure: "throughput_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "packet-path-mark", figure: "new_flow_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "packet-path-mark", figure: "udp_rate_ratio", text: ">= 0.95", holds: atLeast(0.95) },
  { benchmark: "apply", figure: "apply_ratio", text: "<= 1.3", holds: (v) => v <= 1.3 },
  { benchmark: "incremental", figure: "incremental_add_ms", text: "< 100", holds: below(100) },
  { benchmark: "incremental", figure: "incremental_delete_ms", text: "< 100", holds: below(100) },
  { benchmark: "incremental-api", figure: "incremental_api_add_ms", text: "< 100", holds: below(100) },
  { benchmark: "incremental-api", figure: "incremental_api_delete_ms", text: "< 100", holds: below(100) },
  { benchmark: "convergence", figure: "convergence_p50_ms", text: "(context)", holds: null },
  { benchmark: "convergence", figure: "convergence_p99_ms", text: "< 2000", holds: below(2000) },
  { benchmark: "convergence", figure: "agent_idle_writes_per_min", text: "0", holds: (v) => v === 0 },
  { benchmark: "control-plane", figure: "status_current_s", text: "< 5", holds: below(5) },
  { benchmark: "control-plane", figure: "controller_writes_per_min", text: "<= policies x 60", holds: (v, r) => v <= (r.meta.policies ?? 0) * 60 },
  { benchmark: "control-plane", figure: "controller_rss_mib", text: "< 300", holds: below(300) },
  { benchmark: "control-plane", figure: "controller_peak_rss_mib", text: "< 300", holds: below(300) },
  { benchmark: "footprint", figure: "agent_idle_rss_mib", text: "< 100", holds: below(100) },
];

export const BENCHMARKS = [...new Set(TARGETS.map((t) => t.benchmark))];
export const START = "<!-- summary:start (node dist/bench/summary.js --write) -->";
export const END = "<!-- summary:end -->";

const load = (r: Result) => {
  const { loadavg_at_start: a, loadavg_at_end: b } = r.meta.machine;
  return b === undefined ? `${a ?? "?"} (read at the end)` : `${a ?? "?"} -> ${b}`;
};

/** The markdown table of every target figure in the given results (by benchmark name). */
export function summaryTable(results: ReadonlyMap<string, Result>): string {
  const rows = TARGETS.map((t) => {
    const r = results.get(t.benchmark);
    const v = r?.[t.figure];
    const name = `\`${t.figure}\`${t.benchmark === "packet-path-mark" ? " (--revocation-mark)" : ""}`;
    if (!r || typeof v !== "number") return `| ${name} | ${t.text} | missing | no | | |`;
    const verdict = r.meta.smoke ? "smoke run only" : t.holds === null ? "-" : t.holds(v, r) ? "yes" : "**no**";
    return `| ${name} | ${t.text} | ${v} | ${verdict} | ${r.meta.date.slice(0, 16).replace("T", " ")} | ${load(r)} |`;
  });
  return ["| figure | target | latest | holds? | run (UTC) | load average |", "|---|---|---|---|---|---|", ...rows].join("\n");
}

/** The README with the text between the markers replaced. */
export function spliceSummary(readme: string, table: string): string {
  const i = readme.indexOf(START);
  const j = readme.indexOf(END);
  if (i < 0 || j < i) throw new Error("bench/README.md has no summary markers");
  return `${readme.slice(0, i + START.length)}\n${table}\n${readme.slice(j)}`;
}

/** The results files of the benchmarks that have targets, by name (absent files are left out). */
export function readResults(dir: string): Map<string, Result> {
  const out = new Map<string, Result>();
  for (const name of BENCHMARKS) {
    const file = join(dir, `${name}.json`);
    if (existsSync(file)) out.set(name, Result.parse(JSON.parse(readFileSync(file, "utf8"))));
  }
  return out;
}
