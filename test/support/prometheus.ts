// A real Prometheus (the Debian binary, hack/deps.sh) for tests: its own config and storage in a
// temporary directory, a free port, scraping the given targets every second. stop() kills it
// and removes the directory; a test process that exits first kills it too.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { freePort } from "./agent.js";

export interface ScrapeTarget {
  address: string;
  /** Target labels, as the chart's monitors add them (node). */
  labels: Record<string, string>;
}

const Sample = z.tuple([z.number(), z.string()]);
const Vector = z.object({ resultType: z.literal("vector"), result: z.array(z.object({ metric: z.record(z.string(), z.string()), value: Sample })) });
const Matrix = z.object({ resultType: z.literal("matrix"), result: z.array(z.object({ metric: z.record(z.string(), z.string()), values: z.array(Sample) })) });
const Reply = z.discriminatedUnion("status", [
  z.object({ status: z.literal("success"), data: z.unknown() }),
  z.object({ status: z.literal("error"), errorType: z.string(), error: z.string() }),
]);

export interface Series {
  metric: Record<string, string>;
  /** [unix seconds, value] pairs; one for an instant query. */
  values: [number, number][];
}

export interface Prometheus {
  url: string;
  /** An instant query at `time` (unix seconds, default now). */
  query(expr: string, time?: number): Promise<Series[]>;
  /** A range query, as Grafana's time series panels send. */
  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<Series[]>;
  /** What Grafana's label_values(match, label) asks for. */
  labelValues(label: string, match: string): Promise<string[]>;
  log(): string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of live) if (c.exitCode === null) c.kill("SIGKILL");
});

export async function startPrometheus(targets: ScrapeTarget[]): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), "nftegress-prometheus-"));
  const port = await freePort();
  const config = join(dir, "prometheus.yml");
  // JSON is YAML: no YAML writer needed.
  writeFileSync(
    config,
    JSON.stringify({
      global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
      scrape_configs: [{ job_name: "nftegress", static_configs: targets.map((t) => ({ targets: [t.address], labels: t.labels })) }],
    }),
  );
  const child = spawn("prometheus", [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"], { stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  let output = "";
  child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    live.delete(child);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const api = async (path: string, params: Record<string, string>): Promise<unknown> => {
    const res = await fetch(`${url}${path}?${new URLSearchParams(params).toString()}`);
    const reply = Reply.parse(await res.json());
    if (reply.status === "error") throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${reply.errorType}: ${reply.error}`);
    return reply.data;
  };
  const prom: Prometheus = {
    url,
    async query(expr, time) {
      const data = Vector.parse(await api("/api/v1/query", { query: expr, ...(time !== undefined ? { time: String(time) } : {}) }));
      return data.result.map((r) => ({ metric: r.metric, values: [[r.value[0], Number(r.value[1])]] }));
    },
    async queryRange(expr, start, end, stepSeconds) {
      const data = Matrix.parse(await api("/api/v1/query_range", { query: expr, start: String(start), end: String(end), step: String(stepSeconds) }));
      return data.result.map((r) => ({ metric: r.metric, values: r.values.map(([t, v]) => [t, Number(v)] as [number, number]) }));
    },
    async labelValues(label, match) {
      return z.array(z.string()).parse(await api(`/api/v1/label/${encodeURIComponent(label)}/values`, { "match[]": match }));
    },
    log: () => output,
    stop,
  };
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}: ${output.slice(-2000)}`);
      const ready = await fetch(`${url}/-/ready`).then((r) => r.status === 200, () => false);
      if (ready) break;
      if (i > 300) throw new Error(`prometheus not ready within 30 s: ${output.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return prom;
}
