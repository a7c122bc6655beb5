// The benchmarks at tiny sizes (about 1k destinations, 1-2 s per measurement; 2 nodes or 20
// reports against the harness's API server), so they never rot:
// each must exit 0, print one JSON object and write the same to its results file, with every
// figure present, finite and sane. Speed is never asserted here: machines are shared and noisy.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, run } from "../test/support/exec.js";

const positive = (names: string[]) => names.map((n) => [n, "positive"] as const);
const nonNegative = (names: string[]) => names.map((n) => [n, "non-negative"] as const);

const BENCHMARKS: Record<string, (readonly [string, "positive" | "non-negative"])[]> = {
  "packet-path": positive(["throughput_ratio", "naive_throughput_ratio", "new_flow_ratio", "udp_rate_ratio", "tcp_none_gbps", "connects_raw_per_s", "udp_raw_pps"]),
  apply: positive(["apply_ratio", "apply_ours_ms", "apply_raw_ms"]),
  incremental: positive(["incremental_add_ms", "incremental_delete_ms", "raw_interval_add_ms", "raw_interval_delete_ms"]),
  "incremental-api": positive(["incremental_api_add_ms", "incremental_api_delete_ms", "incremental_api_add_from_send_ms", "incremental_api_delete_from_send_ms", "api_write_p50_ms", "ruleset_elements"]),
  footprint: [...positive(["agent_idle_rss_mib", "agent_peak_rss_mib", "ruleset_elements", "agent_memory_limit_mib", "agent_cgroup_peak_mib"]), ...nonNegative(["agent_idle_cpu_percent", "agent_busy_cpu_percent", "agent_oom_kills"])],
  convergence: [...positive(["convergence_p50_ms", "convergence_p99_ms", "report_p99_ms", "status_current_p99_ms"]), ...nonNegative(["agent_idle_writes_per_min", "agent_idle_report_updates_per_min"])],
  "control-plane": [...positive(["controller_rss_mib", "controller_writes_per_min", "burst_write_s", "writer_reports_per_s", "controller_memory_limit_mib", "controller_cgroup_peak_mib"]), ...nonNegative(["status_current_s", "controller_writes_after_per_min", "controller_oom_kills"])],
};

describe("benchmarks (smoke sizes)", () => {
  const results = mkdtempSync(join(tmpdir(), "nftegress-bench-smoke-"));
  after(() => rmSync(results, { recursive: true, force: true }));

  for (const [name, figures] of Object.entries(BENCHMARKS)) {
    it(`bench ${name} runs and reports sane figures`, { timeout: 120_000 }, async (t) => {
      const r = await run(process.execPath, [join(ROOT, "dist", "bench", `${name}.js`), "--smoke", `--results-dir=${results}`]);
      assert.equal(r.code, 0, `bench ${name} exited ${r.code}:\n${r.stderr.slice(-3000)}`);
      const lines = r.stdout.trim().split("\n");
      assert.equal(lines.length, 1, `one JSON line expected on stdout, got:\n${r.stdout.slice(0, 2000)}`);
      const printed = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
      const written = JSON.parse(readFileSync(join(results, `${name}.json`), "utf8")) as Record<string, unknown>;
      assert.deepEqual(written, printed, "the results file holds what was printed");
      for (const [figure, kind] of figures) {
        const v = printed[figure];
        assert.equal(typeof v, "number", `${figure} is a number (got ${JSON.stringify(v)})`);
        assert.ok(Number.isFinite(v), `${figure} is finite (got ${String(v)})`);
        assert.ok(kind === "positive" ? (v as number) > 0 : (v as number) >= 0, `${figure} is ${kind} (got ${String(v)})`);
      }
      t.diagnostic(`bench ${name}: ${figures.map(([f]) => `${f}=${String(printed[f])}`).join(" ")}`);
    });
  }
});
