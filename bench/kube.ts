// API access for the benchmarks that run against the real kube-apiserver of the test harness
// (test/kube/support/cluster.ts): plain HTTPS with keep-alive and the harness's admin token
// (thinner than client-node per request: the writer of 15,000 objects shares two cores with
// the API server it measures, and reports its own time), a bounded-concurrency pool with
// retries, watches that follow resourceVersions, the API server's own request counters
// (apiserver_request_total: the ground truth of what every client wrote), and the CPU of the
// harness's processes. Responses are checked with zod where they are used.
import { readFileSync, readdirSync } from "node:fs";
import { Agent, request, type RequestOptions } from "node:https";
import { basename } from "node:path";
import { z } from "zod";
import type { Cluster } from "../test/kube/support/cluster.js";
import { cpuSeconds, log, now, quantile, round, sleep } from "./lib.js";

export const GROUP_PATH = "/apis/nftegress.io/v1alpha1";

export interface Response {
  status: number;
  body: string;
}

/** An API error with the server's status code and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly method: string,
    readonly path: string,
    body: string,
  ) {
    super(`${method} ${path}: HTTP ${status}: ${body.slice(0, 500)}`);
  }
}

const Meta = z.object({
  name: z.string(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
});
/** Any API object: its metadata is all the benchmarks read of most answers. */
export const Named = z.object({ metadata: Meta });

/** What the benchmarks read of an EgressPolicy: its generation and the status node counts. */
export const PolicyView = z.object({
  metadata: z.object({ name: z.string(), generation: z.number() }),
  status: z
    .object({
      observedGeneration: z.number().optional(),
      nodes: z.object({ selected: z.number(), applied: z.number(), failed: z.number(), pending: z.number() }).optional(),
    })
    .optional(),
});
const List = z.object({ metadata: z.object({ resourceVersion: z.string() }), items: z.array(z.unknown()) });
const WatchEvent = z.object({ type: z.enum(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]), object: z.unknown() });
export type WatchType = z.infer<typeof WatchEvent>["type"];

/** Retried: throttling, an API server busy or restarting. */
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);

export class Api {
  private readonly base: RequestOptions;
  private readonly agent: Agent;
  private readonly watchAgent: Agent;
  /** Requests repeated after a retryable failure, by cause (HTTP status or error code). */
  readonly retries = new Map<string, number>();

  constructor(server: string, ca: Buffer, token: string, maxSockets: number) {
    const u = new URL(server);
    this.agent = new Agent({ keepAlive: true, maxSockets, ca });
    this.watchAgent = new Agent({ keepAlive: false, ca });
    this.base = { host: u.hostname, port: Number(u.port), headers: { authorization: `Bearer ${token}`, accept: "application/json" } };
  }

  /** The harness's API server, as its admin (system:masters: exempt from priority and fairness). */
  static of(cluster: Cluster, maxSockets = 64): Api {
    const token = cluster.kc.getCurrentUser()?.token;
    const caFile = cluster.kc.getCurrentCluster()?.caFile;
    if (!token || !caFile) throw new Error("the harness kubeconfig has no token or CA file");
    return new Api(cluster.server, readFileSync(caFile), token, maxSockets);
  }

  close(): void {
    this.agent.destroy();
    this.watchAgent.destroy();
  }

  /** One request; never throws on an HTTP status (network errors reject). */
  raw(method: string, path: string, body?: unknown, contentType = "application/json"): Promise<Response> {
    const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        { ...this.base, method, path, agent: this.agent, headers: { ...this.base.headers, ...(data === undefined ? {} : { "content-type": contentType, "content-length": Buffer.byteLength(data) }) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", reject);
        },
      );
      req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: no answer in 60 s`)));
      req.on("error", reject);
      req.end(data);
    });
  }

  /** A request that must succeed (2xx), retried on throttling and transient server errors. */
  async call(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      let r: Response;
      try {
        r = await this.raw(method, path, body, contentType);
      } catch (e) {
        if (attempt >= 5) throw e;
        this.retried((e as { code?: string }).code ?? "network");
        await sleep(100 * 2 ** attempt);
        continue;
      }
      if (r.status >= 200 && r.status < 300) return JSON.parse(r.body) as unknown;
      if (!RETRY_STATUS.has(r.status) || attempt >= 5) throw new ApiError(r.status, method, path, r.body);
      this.retried(`HTTP ${r.status}`);
      await sleep(100 * 2 ** attempt);
    }
  }

  private retried(cause: string): void {
    this.retries.set(cause, (this.retries.get(cause) ?? 0) + 1);
  }

  create(path: string, obj: unknown): Promise<z.infer<typeof Named>> {
    return this.call("POST", path, obj).then((r) => Named.parse(r));
  }

  /** JSON merge patch (lists are replaced whole). */
  mergePatch(path: string, patch: unknown): Promise<z.infer<typeof Named>> {
    return this.call("PATCH", path, patch, "application/merge-patch+json").then((r) => Named.parse(r));
  }

  /** Server-side apply with force, as the agent and the controller write. */
  apply(path: string, obj: unknown, fieldManager: string): Promise<z.infer<typeof Named>> {
    return this.call("PATCH", `${path}?fieldManager=${fieldManager}&force=true`, obj, "application/apply-patch+yaml").then((r) => Named.parse(r));
  }

  async list(path: string): Promise<{ resourceVersion: string; items: unknown[] }> {
    const l = List.parse(await this.call("GET", path));
    return { resourceVersion: l.metadata.resourceVersion, items: l.items };
  }

  /** The API server's Prometheus metrics. */
  async metrics(): Promise<string> {
    const r = await this.raw("GET", "/metrics");
    if (r.status !== 200) throw new ApiError(r.status, "GET", "/metrics", r.body);
    return r.body;
  }

  /**
   * Lists `path`, then watches it from the list's resourceVersion (bookmarks on; a watch the
   * server ends is resumed from the last resourceVersion seen). `onEvent` gets every listed
   * object as ADDED first. A watch that cannot resume (410 Gone) ends the benchmark: its
   * counts would be wrong.
   */
  async watch(path: string, onEvent: (type: WatchType, obj: unknown, at: number) => void): Promise<{ stop(): void }> {
    const first = await this.list(path);
    const at = now();
    for (const item of first.items) onEvent("ADDED", item, at);
    let rv = first.resourceVersion;
    let stopped = false;
    let current: ReturnType<typeof request> | null = null;
    const fail = (msg: string) => {
      if (stopped) return;
      log(`watch ${path}: ${msg}`);
      process.exit(1);
    };
    const connect = (): void => {
      if (stopped) return;
      const req = request({ ...this.base, method: "GET", path: `${path}?watch=true&allowWatchBookmarks=true&resourceVersion=${rv}`, agent: this.watchAgent }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return fail(`HTTP ${res.statusCode}`);
        }
        let buf = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buf += chunk;
          for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (!line.trim()) continue;
            const e = WatchEvent.parse(JSON.parse(line));
            if (e.type === "ERROR") return fail(`error event ${JSON.stringify(e.object).slice(0, 300)}`);
            const m = Named.safeParse(e.object);
            if (m.success && m.data.metadata.resourceVersion) rv = m.data.metadata.resourceVersion;
            if (e.type !== "BOOKMARK") onEvent(e.type, e.object, now());
          }
        });
        res.on("end", () => setTimeout(connect, 50));
        res.on("error", () => undefined);
      });
      // A dropped connection (the API server closing it) is resumed like an ended watch.
      req.on("error", () => {
        if (!stopped) setTimeout(connect, 500);
      });
      req.end();
      current = req;
    };
    connect();
    return {
      stop() {
        stopped = true;
        current?.destroy();
      },
    };
  }
}

/**
 * Runs `fn` over `items` with at most `concurrency` calls in flight; returns each call's
 * duration (ms), in item order.
 */
export async function pool<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<unknown>): Promise<number[]> {
  const ms: number[] = new Array<number>(items.length).fill(NaN);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) {
      const t = now();
      await fn(items[i] as T, i);
      ms[i] = now() - t;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return ms;
}

/** What a batch of writes cost the writer: count, wall time, rate, per-request latency. */
export interface WriterFigures {
  requests: number;
  wall_s: number;
  per_s: number;
  latency_p50_ms: number;
  latency_p99_ms: number;
}

export async function timedPool<T>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<unknown>): Promise<WriterFigures> {
  const t = now();
  const ms = await pool(items, concurrency, fn);
  const wall = (now() - t) / 1000;
  return { requests: items.length, wall_s: round(wall, 2), per_s: round(items.length / wall, 1), latency_p50_ms: round(quantile(ms, 0.5), 1), latency_p99_ms: round(quantile(ms, 0.99), 1) };
}

// ---- apiserver_request_total --------------------------------------------------------------

const READ_VERBS = new Set(["GET", "LIST", "WATCH", "CONNECT", "WATCHLIST"]);

/**
 * Write requests the API server served, by "resource[/subresource] VERB", from its
 * apiserver_request_total counter (all response codes: a rejected write still cost a request).
 */
export function writeRequests(metrics: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of metrics.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const close = line.lastIndexOf("}");
    const labels = new Map<string, string>();
    for (const m of line.slice(line.indexOf("{") + 1, close).matchAll(/([a-z_]+)="([^"]*)"/g)) labels.set(m[1] ?? "", m[2] ?? "");
    const verb = labels.get("verb") ?? "";
    if (READ_VERBS.has(verb)) continue;
    const sub = labels.get("subresource");
    const key = `${labels.get("resource") ?? "?"}${sub ? `/${sub}` : ""} ${verb}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(close + 1).trim()));
  }
  return out;
}

/** after - before, without the zero entries. */
export function delta(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of [...after].sort(([a], [b]) => a.localeCompare(b))) {
    const d = v - (before.get(k) ?? 0);
    if (d) out[k] = d;
  }
  return out;
}

/** The sum of the entries whose key starts with `resource` and a space or a slash. */
export function sumFor(d: Readonly<Record<string, number>>, resource: string, opts: { subresource?: string } = {}): number {
  const prefix = opts.subresource ? `${resource}/${opts.subresource} ` : `${resource} `;
  return Object.entries(d)
    .filter(([k]) => k.startsWith(prefix))
    .reduce((a, [, v]) => a + v, 0);
}

/** Polls `cond` every `everyMs` until it holds; throws with `what` after `timeoutMs`. */
export async function until(what: string, cond: () => boolean, timeoutMs: number, everyMs = 5, detail: () => string = () => ""): Promise<number> {
  const end = now() + timeoutMs;
  for (;;) {
    if (cond()) return now();
    if (now() > end) throw new Error(`${what}: not reached within ${Math.round(timeoutMs / 1000)} s ${detail()}`);
    await sleep(everyMs);
  }
}

// ---- where the CPU goes ---------------------------------------------------------------------

/** The harness's processes (etcd, kube-apiserver, kube-controller-manager) by binary name:
 *  those whose command line names the cluster's temp dir. */
export function clusterPids(dir: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (argv.some((a) => a.startsWith(dir))) out[basename(argv[0] ?? "?")] = Number(entry);
    } catch {
      // gone
    }
  }
  return out;
}

/** CPU seconds (user + system) of named processes and of this one, read together. */
export function cpuSnapshot(pids: Readonly<Record<string, number>>): { at: number; cpu: Record<string, number> } {
  const cpu: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    try {
      cpu[name] = cpuSeconds(pid).self;
    } catch {
      cpu[name] = NaN;
    }
  }
  const me = process.cpuUsage();
  cpu["benchmark"] = (me.user + me.system) / 1e6;
  return { at: now(), cpu };
}

/** Per process, % of one core between two snapshots. */
export function cpuPercent(a: ReturnType<typeof cpuSnapshot>, b: ReturnType<typeof cpuSnapshot>): Record<string, number> {
  const s = (b.at - a.at) / 1000;
  const out: Record<string, number> = { seconds: round(s, 1) };
  for (const [name, v] of Object.entries(b.cpu)) out[name] = round((((v - (a.cpu[name] ?? NaN)) / s) * 100), 1);
  return out;
}
