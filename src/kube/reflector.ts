// List + watch into an in-memory store (kube-runtime's watcher + reflector), robust to what
// client-node does not handle (notes/client-node.md 6-7): relist on 410 Gone and on errors,
// rewatch from the last resourceVersion when a watch ends cleanly or hits client-node's 30 s
// idle timeout, a watchdog for a silent watch, periodic resync, backoff with jitter.
// Consumers are level-triggered: they get "something changed" and read the store.
import type { Logger } from "pino";
import { Backoff, sleep } from "./backoff.js";
import { k8s, kubeError, type KubeClient } from "./client.js";

/** One page of a list. A list is read in pages of at most LIST_PAGE objects (client-go's
 *  reflector does the same), so the first list of 5,000 reports is ten responses of a few MB,
 *  each parsed and folded into the store before the next is read, not one 50 MB response. */
export interface ListPage {
  items: unknown[];
  resourceVersion: string;
  /** The token for the next page; absent or empty on the last. */
  continue?: string;
}

export const LIST_PAGE = 500;

export interface Source {
  /** Human name for logs, e.g. "egresspolicies". */
  name: string;
  /** Watch path, e.g. /apis/nftegress.io/v1alpha1/egresspolicies. */
  path: string;
  /** fieldSelector / labelSelector, used by list and watch alike. */
  query?: Record<string, string>;
  /** One page: the first without a token, the next with the previous page's `continue`. */
  list(page: { limit: number; continue?: string }): Promise<ListPage>;
}

export interface ReflectorOptions {
  /** Objects per list page (default LIST_PAGE). */
  pageSize?: number;
  resyncMs?: number;
  /** Restart a watch that delivered nothing for this long (client-node also ends quiet ones at 30 s). */
  watchdogMs?: number;
  /** An update that fails parsing keeps the object's last good version in the store (same
   *  uid) instead of removing it; the agent's enforcement depends on it. */
  keepLastGood?: boolean;
}

interface Meta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; uid?: string };
}

/** An object whose current version fails parsing. */
export interface InvalidObject {
  key: string;
  error: string;
  /** The object as the API server holds it. */
  raw: unknown;
  /** Whether the store still holds its last good version (same uid). */
  kept: boolean;
}

function metaOf(obj: unknown): Meta["metadata"] {
  return typeof obj === "object" && obj !== null ? (obj as Meta).metadata : undefined;
}

export class Reflector<T> {
  /** Replaced whole by each completed list (relist). */
  private store = new Map<string, T>();
  private readonly listeners = new Set<() => void>();
  private readonly abort = new AbortController();
  private running: Promise<void> | null = null;
  private resourceVersion = "";
  private synced = false;
  /** Objects whose current version fails parsing, by key (logged once per resourceVersion).
   *  With keepLastGood the store keeps the last version of the same object that parsed, so a
   *  version the agent cannot read (a newer CRD's field) never removes what the old one enforced. */
  private readonly invalid = new Map<string, InvalidObject & { rv: string }>();
  /** Since when the last list or watch attempt failed (null: the last one worked). */
  private failing: number | null = null;
  relists = 0;
  watches = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly source: Source,
    private readonly parse: (raw: unknown) => T | { error: string },
    private readonly log: Logger,
    private readonly opts: ReflectorOptions = {},
  ) {}

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** The source's name, e.g. "egresspolicies". */
  get name(): string {
    return this.source.name;
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  /** When the store stopped following the API server (its last list or watch failed), if it has. */
  get failingSince(): number | null {
    return this.failing;
  }

  private failed(): void {
    this.failing ??= Date.now();
  }

  items(): T[] {
    return [...this.store.values()];
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  /** Objects whose current version fails parsing (a deletion clears them). */
  invalidObjects(): InvalidObject[] {
    return [...this.invalid.values()].map(({ key, error, raw, kept }) => ({ key, error, raw, kept }));
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private notify(): void {
    for (const fn of this.listeners) {
      try {
        fn();
      } catch (e) {
        this.log.error({ err: String(e), source: this.source.name }, "change listener failed");
      }
    }
  }

  private key(raw: unknown): string | null {
    const m = metaOf(raw);
    if (!m?.name) return null;
    return m.namespace ? `${m.namespace}/${m.name}` : m.name;
  }

  private upsert(raw: unknown, store = this.store): boolean {
    const key = this.key(raw);
    if (!key) return false;
    const parsed = this.parse(raw);
    if (typeof parsed === "object" && parsed !== null && "error" in parsed && typeof (parsed as { error: unknown }).error === "string") {
      const rv = metaOf(raw)?.resourceVersion ?? "";
      const error = (parsed as { error: string }).error;
      // The last good version of this very object (a recreated one has a new uid).
      const prev = store.get(key) ?? this.store.get(key);
      const kept = this.opts.keepLastGood === true && prev !== undefined && metaOf(prev)?.uid === metaOf(raw)?.uid;
      if (kept) store.set(key, prev);
      else store.delete(key);
      const seen = this.invalid.get(key);
      if (seen?.rv === rv && seen.kept === kept) return false;
      this.invalid.set(key, { key, error, raw, kept, rv });
      this.log.warn({ source: this.source.name, object: key, error, keptLastGood: kept }, kept ? "object fails validation, keeping its last good version" : "object fails validation, not used");
      return true;
    }
    this.invalid.delete(key);
    store.set(key, parsed as T);
    return true;
  }

  /** Reads every page into a new store, then swaps it in: consumers see the old state or the
   *  new, never a partial list. A failing page (an expired continue token after etcd
   *  compaction: 410) fails the whole list, which the loop retries from the first page. */
  private async relist(): Promise<void> {
    const fresh = new Map<string, T>();
    const limit = this.opts.pageSize ?? LIST_PAGE;
    let page = await this.source.list({ limit });
    const seen = new Set<string>();
    for (;;) {
      for (const raw of page.items) {
        this.upsert(raw, fresh);
        const key = this.key(raw);
        if (key) seen.add(key);
      }
      if (!page.continue) break;
      page = await this.source.list({ limit, continue: page.continue });
    }
    this.relists++;
    for (const key of [...this.invalid.keys()]) if (!seen.has(key)) this.invalid.delete(key);
    this.failing = null;
    this.store = fresh;
    this.resourceVersion = page.resourceVersion;
    this.synced = true;
    this.notify();
  }

  /** One watch; resolves with "relist" or "rewatch". */
  private watchOnce(): Promise<"relist" | "rewatch"> {
    return new Promise((resolve) => {
      let settled = false;
      let watchAbort: AbortController | null = null;
      let needRelist = false;
      let dog: NodeJS.Timeout | undefined;
      const finish = (how: "relist" | "rewatch") => {
        if (settled) return;
        settled = true;
        clearTimeout(dog);
        this.abort.signal.removeEventListener("abort", onAbort);
        watchAbort?.abort();
        resolve(how);
      };
      const onAbort = () => finish("rewatch");
      this.abort.signal.addEventListener("abort", onAbort, { once: true });
      const feed = () => {
        clearTimeout(dog);
        dog = setTimeout(() => {
          this.log.warn({ source: this.source.name }, "watch silent too long, restarting it");
          finish("rewatch");
        }, this.opts.watchdogMs ?? 120_000);
        dog.unref();
      };
      feed();
      this.watches++;
      const w = new k8s.Watch(this.client.kc);
      w.watch(
        this.source.path,
        { ...(this.source.query ?? {}), resourceVersion: this.resourceVersion, allowWatchBookmarks: "true" },
        (type: string, obj: unknown) => {
          feed();
          const rv = metaOf(obj)?.resourceVersion;
          if (type === "ERROR") {
            const status = obj as { code?: number; reason?: string; message?: string };
            this.log.info({ source: this.source.name, code: status.code, reason: status.reason }, "watch error event, relisting");
            needRelist = true;
            return;
          }
          if (type === "BOOKMARK") {
            if (rv) this.resourceVersion = rv;
            return;
          }
          if (rv) this.resourceVersion = rv;
          const changed = type === "DELETED" ? this.deleteRaw(obj) : this.upsert(obj);
          if (changed || type === "DELETED") this.notify();
        },
        (err: unknown) => {
          if (needRelist) return finish("relist");
          if (!err) return finish("rewatch");
          const e = err as { name?: string };
          if (e.name === "TimeoutError" || e.name === "AbortError") return finish("rewatch");
          this.log.warn({ source: this.source.name, error: kubeError(err).message }, "watch failed");
          this.failed();
          finish("relist");
        },
      )
        .then((ac: AbortController) => {
          watchAbort = ac;
          if (settled) ac.abort();
        })
        .catch((err: unknown) => {
          // Failed before the stream started (400/429/503 after a restart, connection refused).
          this.log.warn({ source: this.source.name, error: kubeError(err).message }, "watch could not start");
          this.failed();
          finish("relist");
        });
    });
  }

  private deleteRaw(raw: unknown): boolean {
    const key = this.key(raw);
    if (!key) return false;
    const wasInvalid = this.invalid.delete(key);
    return this.store.delete(key) || wasInvalid;
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff(500, 30_000);
    let lastList = 0;
    while (!this.abort.signal.aborted) {
      try {
        await this.relist();
        lastList = Date.now();
        backoff.reset();
      } catch (e) {
        const err = kubeError(e);
        this.failed();
        const wait = backoff.next();
        this.log.warn({ source: this.source.name, code: err.code, error: err.message, retryMs: wait }, "list failed, retrying");
        await sleep(wait, this.abort.signal);
        continue;
      }
      for (;;) {
        if (this.abort.signal.aborted) return;
        if (Date.now() - lastList > (this.opts.resyncMs ?? 300_000)) break;
        const how = await this.watchOnce();
        if (this.abort.signal.aborted) return;
        if (how === "relist") {
          await sleep(backoff.next(), this.abort.signal);
          break;
        }
        backoff.reset();
      }
    }
  }
}

/** A Source for cluster-scoped custom resources. */
export function customSource(client: KubeClient, group: string, version: string, plural: string, query: Record<string, string> = {}): Source {
  return {
    name: plural,
    path: `/apis/${group}/${version}/${plural}`,
    query,
    async list(page) {
      const res = (await client.custom.listClusterCustomObject({ group, version, plural, ...selectors(query), ...paging(page) }, client.options())) as {
        items?: unknown[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      return pageOf(res.items ?? [], res.metadata);
    },
  };
}

function selectors(query: Record<string, string>): { labelSelector?: string; fieldSelector?: string } {
  return { ...(query["labelSelector"] ? { labelSelector: query["labelSelector"] } : {}), ...(query["fieldSelector"] ? { fieldSelector: query["fieldSelector"] } : {}) };
}

/** client-node's spelling of the paging parameters. */
function paging(page: { limit: number; continue?: string }): { limit: number; _continue?: string } {
  return { limit: page.limit, ...(page.continue ? { _continue: page.continue } : {}) };
}

function pageOf(items: unknown[], meta: { resourceVersion?: string; _continue?: string; continue?: string } | undefined): ListPage {
  const next = meta?._continue ?? meta?.continue;
  return { items, resourceVersion: meta?.resourceVersion ?? "", ...(next ? { continue: next } : {}) };
}

/** Plain JSON of a typed model (Dates to strings), as a watch would deliver it. */
function plain(obj: unknown): unknown {
  return JSON.parse(JSON.stringify(obj)) as unknown;
}

export function nodeSource(client: KubeClient, fieldSelector?: string): Source {
  const query: Record<string, string> = fieldSelector ? { fieldSelector } : {};
  return {
    name: "nodes",
    path: "/api/v1/nodes",
    query,
    async list(page) {
      const res = await client.core.listNode({ ...selectors(query), ...paging(page) }, client.options());
      return pageOf(res.items.map((n) => ({ ...(plain(n) as object), metadata: plain(n.metadata) })), res.metadata);
    },
  };
}

export function endpointSliceSource(client: KubeClient, namespace: string, labelSelector: string): Source {
  return {
    name: "endpointslices",
    path: `/apis/discovery.k8s.io/v1/namespaces/${namespace}/endpointslices`,
    query: { labelSelector },
    async list(page) {
      const res = await client.discovery.listNamespacedEndpointSlice({ namespace, labelSelector, ...paging(page) }, client.options());
      return pageOf(res.items.map(plain), res.metadata);
    },
  };
}

export function daemonSetSource(client: KubeClient, namespace: string, fieldSelector: string): Source {
  return {
    name: "daemonsets",
    path: `/apis/apps/v1/namespaces/${namespace}/daemonsets`,
    query: { fieldSelector },
    async list(page) {
      const res = await client.apps.listNamespacedDaemonSet({ namespace, fieldSelector, ...paging(page) }, client.options());
      return pageOf(res.items.map((d) => ({ metadata: plain(d.metadata) })), res.metadata);
    },
  };
}
