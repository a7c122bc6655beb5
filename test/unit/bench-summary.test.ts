// bench/README.md's summary table is the one generated from bench/results/*.json, so the
// README never claims a figure the results files do not hold; and the verdicts follow the
// targets (a figure over its target reads "no").
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { END, START, Result, readResults, spliceSummary, summaryTable } from "../../bench/targets.js";
import { ROOT } from "../support/exec.js";

describe("bench summary", () => {
  it("bench/README.md holds the table generated from bench/results", () => {
    const readme = readFileSync(join(ROOT, "bench", "README.md"), "utf8");
    const table = summaryTable(readResults(join(ROOT, "bench", "results")));
    assert.ok(readme.includes(START) && readme.includes(END), "summary markers present");
    assert.equal(spliceSummary(readme, table), readme, "stale: run `node dist/bench/summary.js --write` after updating bench/results");
  });

  it("reads a figure over its target as not holding, and a missing one as missing", () => {
    const run = (figures: Record<string, number>, smoke = false): Result => Result.parse({ ...figures, meta: { date: "2026-11-26T06:00:00.000Z", smoke, policies: 50, machine: { loadavg_at_start: 1, loadavg_at_end: 2 } } });
    const table = summaryTable(new Map([
      ["apply", run({ apply_ratio: 2.38 })],
      ["control-plane", run({ controller_writes_per_min: 3001, status_current_s: 1.9 })],
      ["packet-path", run({ throughput_ratio: 0.97 }, true)],
    ]));
    const row = (f: string) => table.split("\n").find((l) => l.startsWith(`| \`${f}\``)) ?? "";
    assert.match(row("apply_ratio"), /\| 2\.38 \| \*\*no\*\* \|/);
    assert.match(row("controller_writes_per_min"), /\| 3001 \| \*\*no\*\* \|/, "bounded by policies x 60");
    assert.match(row("status_current_s"), /\| 1\.9 \| yes \| 2026-11-26 06:00 \| 1 -> 2 \|/);
    assert.match(row("throughput_ratio"), /smoke run only/);
    assert.match(row("incremental_add_ms"), /missing \| no/);
  });
});
