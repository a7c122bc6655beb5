// Prints the summary table of bench/results/*.json against the design's targets, or with
// --write puts it into bench/README.md between its markers (see targets.ts).
//   node dist/bench/summary.js [--write] [--results-dir=DIR]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../test/support/exec.js";
import { readResults, spliceSummary, summaryTable } from "./targets.js";

const args = process.argv.slice(2);
const dir = args.find((a) => a.startsWith("--results-dir="))?.slice("--results-dir=".length) ?? join(ROOT, "bench", "results");
const table = summaryTable(readResults(dir));
if (args.includes("--write")) {
  const readme = join(ROOT, "bench", "README.md");
  writeFileSync(readme, spliceSummary(readFileSync(readme, "utf8"), table));
}
process.stdout.write(`${table}\n`);
