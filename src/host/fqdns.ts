// Resolves FQDNs named by policies, honouring TTLs (clamped), for the agent.
import { Resolver } from "node:dns/promises";

const MIN_TTL_S = 5;
const MAX_TTL_S = 3600;

interface Entry {
  addrs: string[];
  expires: number;
}

export class FqdnResolver {
  private readonly cache = new Map<string, Entry>();
  private readonly resolver = new Resolver({ timeout: 2000, tries: 2 });

  /** Resolves names whose entries expired; returns true when any address list changed. */
  async refresh(names: Iterable<string>, now = Date.now()): Promise<boolean> {
    let changed = false;
    const wanted = new Set(names);
    for (const k of this.cache.keys()) if (!wanted.has(k)) this.cache.delete(k);
    await Promise.all(
      [...wanted].map(async (name) => {
        const prev = this.cache.get(name);
        if (prev && prev.expires > now) return;
        const [v4, v6] = await Promise.all([
          this.resolver.resolve4(name, { ttl: true }).catch(() => []),
          this.resolver.resolve6(name, { ttl: true }).catch(() => []),
        ]);
        const all = [...v4, ...v6];
        if (!all.length && prev) {
          // Keep the last answer while the resolver fails; retry soon.
          prev.expires = now + MIN_TTL_S * 1000;
          return;
        }
        const ttl = Math.min(MAX_TTL_S, Math.max(MIN_TTL_S, Math.min(...all.map((a) => a.ttl), MAX_TTL_S)));
        const addrs = all.map((a) => a.address).sort();
        if (!prev || prev.addrs.join() !== addrs.join()) changed = true;
        this.cache.set(name, { addrs, expires: now + ttl * 1000 });
      }),
    );
    return changed;
  }

  snapshot(): Map<string, string[]> {
    return new Map([...this.cache].map(([k, v]) => [k, v.addrs]));
  }
}
