// Resolves FQDNs named by policies, honouring TTLs (clamped), for the agent.
import { Resolver } from "node:dns/promises";

const MIN_TTL_S = 5;
const MAX_TTL_S = 3600;

export interface FqdnResolverOptions {
  /** DNS servers for Resolver.setServers, e.g. "127.0.0.1:5353"; default: the system's. */
  servers?: string[];
  /** Lower bound for a TTL, also how soon a failed or negative answer is retried (default 5). */
  minTtlSeconds?: number;
  /** Upper bound for a TTL (default 3600). */
  maxTtlSeconds?: number;
  /** Clock in milliseconds (default Date.now). */
  now?: () => number;
  /** Per-try query timeout in milliseconds (default 2000). */
  timeoutMs?: number;
  /** Tries per server before a query fails (default 2). */
  tries?: number;
}

interface Entry {
  /** Sorted, de-duplicated; empty after NXDOMAIN or NODATA. */
  v4: string[];
  v6: string[];
  expires: number;
}

/**
 * One family's lookup: an answer (possibly empty: NXDOMAIN or no records of that type, which
 * are authoritative "no addresses"), or a failure (timeout, SERVFAIL, refused, ...) that says
 * nothing about the name, so the last answer stays in use.
 */
type Lookup = { ok: true; addrs: string[]; ttl: number | null } | { ok: false };

/** The resolver's errors that mean "the name has no such addresses", not "could not ask". */
const NEGATIVE = new Set(["ENOTFOUND", "ENODATA"]);

function errorCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

export class FqdnResolver {
  private readonly cache = new Map<string, Entry>();
  private readonly resolver: Resolver;
  private readonly minTtl: number;
  private readonly maxTtl: number;
  private readonly now: () => number;
  /** The names the latest refresh asked for; an older refresh finishing later must not re-add others. */
  private wanted = new Set<string>();
  /** Lookups under way, shared by overlapping refreshes so a name is asked once. */
  private readonly inflight = new Map<string, Promise<boolean>>();

  constructor(opts: FqdnResolverOptions = {}) {
    this.minTtl = opts.minTtlSeconds ?? MIN_TTL_S;
    this.maxTtl = opts.maxTtlSeconds ?? MAX_TTL_S;
    if (!(this.minTtl > 0 && this.minTtl <= this.maxTtl && Number.isFinite(this.maxTtl))) {
      throw new RangeError(`TTL bounds must satisfy 0 < min <= max: got min ${this.minTtl}, max ${this.maxTtl}`);
    }
    this.now = opts.now ?? Date.now;
    this.resolver = new Resolver({ timeout: opts.timeoutMs ?? 2000, tries: opts.tries ?? 2 });
    if (opts.servers) this.resolver.setServers(opts.servers);
  }

  /**
   * Resolves wanted names whose entries expired and forgets names no longer wanted; returns
   * true when the snapshot changed (some name's addresses differ, appeared or went away).
   */
  async refresh(names: Iterable<string>): Promise<boolean> {
    const now = this.now();
    const wanted = new Set(names);
    this.wanted = wanted;
    let changed = false;
    for (const [name, e] of this.cache) {
      if (wanted.has(name)) continue;
      this.cache.delete(name);
      if (e.v4.length || e.v6.length) changed = true;
    }
    const results = await Promise.all(
      [...wanted].map((name) => {
        const prev = this.cache.get(name);
        if (prev && prev.expires > now) return false;
        let p = this.inflight.get(name);
        if (!p) {
          p = this.resolveName(name, now).finally(() => this.inflight.delete(name));
          this.inflight.set(name, p);
        }
        return p;
      }),
    );
    return results.some(Boolean) || changed;
  }

  /** name -> addresses (IPv4 then IPv6), only for names that currently have addresses. */
  snapshot(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [name, e] of this.cache) if (e.v4.length || e.v6.length) out.set(name, [...e.v4, ...e.v6]);
    return out;
  }

  private async resolveName(name: string, now: number): Promise<boolean> {
    const [v4, v6] = await Promise.all([this.lookup(() => this.resolver.resolve4(name, { ttl: true })), this.lookup(() => this.resolver.resolve6(name, { ttl: true }))]);
    if (!this.wanted.has(name)) return false; // dropped while we were asking
    const prev = this.cache.get(name);
    // A family that failed keeps its last answer (none if there was none); the whole name is
    // then retried soon rather than after the other family's TTL.
    const next: Entry = {
      v4: v4.ok ? v4.addrs : (prev?.v4 ?? []),
      v6: v6.ok ? v6.addrs : (prev?.v6 ?? []),
      expires: 0,
    };
    const ttls = [v4, v6].flatMap((l) => (l.ok && l.ttl !== null ? [l.ttl] : []));
    // Failures and negative answers (no TTL known: the SOA minimum is not exposed) use the minimum.
    const ttl = !v4.ok || !v6.ok || !ttls.length ? this.minTtl : Math.min(this.maxTtl, Math.max(this.minTtl, Math.min(...ttls)));
    next.expires = now + ttl * 1000;
    this.cache.set(name, next);
    return !sameList(prev?.v4 ?? [], next.v4) || !sameList(prev?.v6 ?? [], next.v6);
  }

  private async lookup(ask: () => Promise<{ address: string; ttl: number }[]>): Promise<Lookup> {
    try {
      const records = await ask();
      const addrs = [...new Set(records.map((r) => r.address))].sort();
      return { ok: true, addrs, ttl: records.length ? Math.min(...records.map((r) => r.ttl)) : null };
    } catch (e) {
      return NEGATIVE.has(errorCode(e) ?? "") ? { ok: true, addrs: [], ttl: null } : { ok: false };
    }
  }
}
