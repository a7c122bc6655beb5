// A rule's destinations (its own CIDRs, FQDN answers, address-set chunks) compiled into the
// elements of its stride hash sets: the union is aggregated, then each prefix is expanded to
// the next 4-bit stride (at most 8 elements). Pure in its results, but it remembers them: a
// rule whose sources are the same arrays as last time (an unchanged policy or address-set
// object keeps its identity) is not compiled again, each source list is parsed once, and a
// recompiled rule patches its previous stride sets where its prefixes changed, so that a
// one-CIDR change to a 100k-CIDR set costs milliseconds, not a full recompile.
import { expandToStrides, formatAddress, packedAddr, packedLen, strideFor, v4BlockSize, type Family } from "../net/cidr.js";
import { parsePrefixList, union, type PrefixList } from "../net/prefixlist.js";
import type { Elements } from "../nft/transaction.js";
import { diffSorted } from "../net/sorted.js";

export interface StrideElements {
  family: Family;
  stride: number;
  /** Set elements, ascending: IPv4 as numbers, IPv6 as texts. */
  elements: Elements;
}

export interface RuleDestinations {
  /** The union of the sources, aggregated. */
  prefixes: PrefixList;
  /** Per family (4 first), per stride (longest first). */
  strides: StrideElements[];
}

interface Entry {
  sources: readonly (readonly string[])[];
  result: RuleDestinations;
  /** IPv4 stride -> its addresses (the elements of result). */
  v4: Map<number, Uint32Array>;
}

/** Changed prefixes up to which stride sets are patched rather than built again. */
const PATCH_MAX = 1000;

/** Source lists this short are compared by content (FQDN answers are new arrays every time). */
const SMALL = 256;

function sameSource(a: readonly string[], b: readonly string[]): boolean {
  if (a === b) return true;
  return a.length === b.length && a.length <= SMALL && a.every((x, i) => x === b[i]);
}

/** The addresses each IPv4 stride set must hold, ascending (prefixes are ascending and disjoint). */
function v4Strides(packed: Float64Array): Map<number, Uint32Array> {
  const lists: number[][] = Array.from({ length: 33 }, () => []);
  for (let i = 0; i < packed.length; i++) {
    const p = packed[i] ?? 0;
    const addr = packedAddr(p);
    const len = packedLen(p);
    const stride = strideFor(len);
    const list = lists[stride] ?? [];
    const step = v4BlockSize(stride);
    const end = addr + v4BlockSize(len);
    for (let a = addr; a < end; a += step) list.push(a);
  }
  const out = new Map<number, Uint32Array>();
  lists.forEach((list, stride) => list.length && out.set(stride, Uint32Array.from(list)));
  return out;
}


/** The first index at or after `from` whose value is not below x. */
function lowerBound(list: Uint32Array, x: number, from: number): number {
  let lo = from;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((list[mid] ?? 0) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A stride set after some prefixes left and others came: the old addresses minus `removed`
 * (which they hold), merged with `added`; all ascending. Unchanged runs are copied whole.
 */
function patch(old: Uint32Array, removed: Uint32Array, added: Uint32Array): Uint32Array {
  const out = new Uint32Array(old.length - removed.length + added.length);
  let at = 0;
  let from = 0;
  const keep = (to: number) => {
    out.set(old.subarray(from, to), at);
    at += to - from;
    from = to;
  };
  let r = 0;
  let a = 0;
  while (r < removed.length || a < added.length) {
    const gone = removed[r] ?? Infinity;
    const come = added[a] ?? Infinity;
    if (gone < come) {
      keep(lowerBound(old, gone, from));
      from++;
      r++;
    } else {
      keep(lowerBound(old, come, from));
      out[at++] = come;
      a++;
    }
  }
  keep(old.length);
  return out;
}

/** The stride sets of the previous result, changed only where the aggregated prefixes changed. */
function patchStrides(prev: Entry, packed: Float64Array): Map<number, Uint32Array> {
  const diff = diffSorted(prev.result.prefixes.v4, packed);
  const removed = Float64Array.from(diff.removed);
  const added = Float64Array.from(diff.added);
  if (removed.length + added.length > PATCH_MAX) return v4Strides(packed);
  const gone = v4Strides(removed);
  const come = v4Strides(added);
  const out = new Map<number, Uint32Array>();
  for (const stride of new Set([...prev.v4.keys(), ...come.keys()])) {
    const old = prev.v4.get(stride) ?? new Uint32Array(0);
    const r = gone.get(stride);
    const a = come.get(stride);
    const next = r || a ? patch(old, r ?? new Uint32Array(0), a ?? new Uint32Array(0)) : old;
    if (next.length) out.set(stride, next);
  }
  return out;
}

export class DestinationCompiler {
  private readonly parsed = new WeakMap<readonly string[], PrefixList>();
  private entries = new Map<string, Entry>();
  private used = new Map<string, Entry>();

  /**
   * The destinations of one rule, from its source lists (texts of addresses and prefixes). key
   * names the rule (results are reused per key); the result depends only on the sources.
   */
  compile(key: string, sources: readonly (readonly string[])[]): RuleDestinations {
    const prev = this.used.get(key) ?? this.entries.get(key);
    if (prev && prev.sources.length === sources.length && prev.sources.every((s, i) => sameSource(s, sources[i] ?? []))) {
      this.used.set(key, prev);
      return prev.result;
    }
    const prefixes = union(sources.map((s) => this.parse(s)));
    const v4 = prev ? patchStrides(prev, prefixes.v4) : v4Strides(prefixes.v4);
    const strides: StrideElements[] = [...v4.keys()].sort((a, b) => b - a).map((stride) => ({ family: 4, stride, elements: v4.get(stride) ?? new Uint32Array(0) }));
    const v6 = expandToStrides(prefixes.v6);
    for (const stride of [...v6.keys()].sort((a, b) => b - a)) {
      strides.push({ family: 6, stride, elements: (v6.get(stride) ?? []).map((a) => formatAddress(6, a)) });
    }
    const result = { prefixes, strides };
    this.used.set(key, { sources: [...sources], result, v4 });
    return result;
  }

  /** Forgets the rules not compiled since the last call (call once per full compile). */
  sweep(): void {
    this.entries = this.used;
    this.used = new Map();
  }

  private parse(texts: readonly string[]): PrefixList {
    let p = this.parsed.get(texts);
    if (!p) this.parsed.set(texts, (p = parsePrefixList(texts)));
    return p;
  }
}
