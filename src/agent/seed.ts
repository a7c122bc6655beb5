// Commit-confirm's starting point after a restart: what the kernel's table enforces when the
// agent starts, so that a first change that loses the API server is rolled back to it (never
// to "no table", which would open the node). The rules' text comes from the structure the
// previous agent saved (src/host/confirmed.ts), trusted only when the kernel's terse listing
// matches it object for object and rule comment for rule comment (each comment carries a hash
// of its rule); the static sets' elements and the named counters' values are read from the
// kernel. The dynamic sets are declared only: a restore never flushes them.
import type { NftExecutor } from "../nft/executor.js";
import { listedElements } from "../nft/elements.js";
import { drift, parseCounters, type CounterValue } from "../nft/listing.js";
import { readTable } from "../nft/read.js";
import type { Elements } from "../nft/transaction.js";
import type { Ruleset, SetSpec } from "../nft/ruleset.js";
import { parseAddress } from "../net/cidr.js";
import type { RulesetStore } from "../host/confirmed.js";
import { kernelEpoch, withEpoch } from "../nft/recheck.js";

export interface Snapshot {
  ruleset: Ruleset;
  /** The named counters' values when read: a restore re-creates a deleted counter from them. */
  counters: Map<string, CounterValue>;
}

export type Seed =
  | { kind: "absent" }
  | { kind: "dormant" }
  | { kind: "snapshot"; snapshot: Snapshot }
  /** A table we cannot rebuild: a rollback must leave it (or what replaced it) in place. */
  | { kind: "unknown"; reason: string };

/** IPv4 elements as the compiler keeps them (sorted numbers), so the planner diffs them fast. */
function asElements(keyType: string, listed: string[]): Elements {
  if (keyType !== "ipv4_addr") return listed;
  const out = new Uint32Array(listed.length);
  for (let i = 0; i < listed.length; i++) {
    const a = parseAddress(listed[i] ?? "");
    if (a?.family !== 4) return listed;
    out[i] = a.addr;
  }
  return out.sort();
}

export async function snapshotTable(nft: NftExecutor, saved: RulesetStore | undefined): Promise<Seed> {
  const table = await readTable(nft);
  if (table.kind === "absent") return { kind: "absent" };
  if (table.kind === "dormant") return { kind: "dormant" };
  const loaded = saved?.load() ?? null;
  if (!loaded) return { kind: "unknown", reason: "no saved ruleset of an earlier agent on this node" };
  // The mark layout's epoch moves with every change: the saved structure at the kernel's.
  const epoch = loaded.recheckMark ? kernelEpoch(table.json, loaded.recheckMark.mask) : null;
  if (loaded.recheckMark && epoch === null) return { kind: "unknown", reason: "the table's revocation epoch could not be read" };
  const skeleton = loaded.recheckMark && epoch !== null ? withEpoch(loaded, epoch) : loaded;
  const diffs = drift(skeleton, table.listing);
  const known = new Set(skeleton.chains.map((c) => c.name));
  for (const c of table.listing.chains) if (!known.has(c)) diffs.push(`chain ${c} not in the saved ruleset`);
  if (diffs.length) return { kind: "unknown", reason: `the table differs from the saved ruleset (${diffs.slice(0, 3).join("; ")})` };
  const sets: SetSpec[] = [];
  for (const s of skeleton.sets) {
    if (s.dynamic) {
      sets.push(s);
      continue;
    }
    const listed = listedElements(await nft.listSet(s.name), s.name);
    if (listed === null) return { kind: "unknown", reason: `set ${s.name} could not be listed` };
    sets.push({ ...s, elements: asElements(s.keyType, listed) });
  }
  return { kind: "snapshot", snapshot: { ruleset: { ...skeleton, sets }, counters: parseCounters(table.json) } };
}

/** The named counters' current values (one terse listing, a few milliseconds). */
export async function counterValues(nft: NftExecutor): Promise<Map<string, CounterValue>> {
  const table = await readTable(nft);
  return table.kind === "present" ? parseCounters(table.json) : new Map();
}
