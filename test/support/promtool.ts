// Prometheus' own linter on an exposition (`promtool check metrics`, Debian package prometheus,
// installed by hack/deps.sh): what a Prometheus user's tooling would say about our /metrics.
import { sh } from "./exec.js";

export interface LintResult {
  /** 0: clean; 3: lint problems; 1: the text does not parse. */
  code: number | null;
  /** promtool's findings, one per line (empty when clean). */
  problems: string[];
}

export function checkMetrics(exposition: string): LintResult {
  const r = sh("promtool", ["check", "metrics"], exposition);
  if (r.code === null) throw new Error(`promtool did not run: ${r.stderr}`);
  const problems = `${r.stdout}\n${r.stderr}`.split("\n").map((l) => l.trim()).filter(Boolean);
  return { code: r.code, problems };
}
