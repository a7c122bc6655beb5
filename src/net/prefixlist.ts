// Large lists of prefixes (100k destinations), kept compact and never as one object per
// prefix: IPv4 prefixes packed into one number each (address * 64 + length) in a sorted
// Float64Array, IPv6 prefixes (few in practice) as Cidrs. Union, coverage and printing work on
// the packed form. Pure.
import { aggregate, aggregateSortedV4, formatAddress, formatCidr, packV4, packedAddr, packedLen, parseCidr, v4BlockSize, v6HostMask, type Cidr } from "./cidr.js";

export interface PrefixList {
  /** Packed IPv4 prefixes, ascending. */
  readonly v4: Float64Array;
  readonly v6: readonly Cidr[];
}

export const EMPTY_LIST: PrefixList = { v4: new Float64Array(0), v6: [] };

/** Parses prefix texts (invalid ones are skipped: they were refused by validation before). */
export function parsePrefixList(texts: readonly string[]): PrefixList {
  const v4: number[] = [];
  const v6: Cidr[] = [];
  for (const t of texts) {
    const r = parseCidr(t);
    if (!r.ok) continue;
    if (r.cidr.family === 4) v4.push(packV4(r.cidr.addr, r.cidr.len));
    else v6.push(r.cidr);
  }
  return { v4: Float64Array.from(v4).sort(), v6 };
}

export function listOf(cidrs: readonly Cidr[]): PrefixList {
  const v4: number[] = [];
  for (const c of cidrs) if (c.family === 4) v4.push(packV4(c.addr, c.len));
  return { v4: Float64Array.from(v4).sort(), v6: cidrs.filter((c) => c.family === 6) };
}

function merge2(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let k = 0;
  while (i < a.length && j < b.length) out[k++] = (a[i] ?? 0) <= (b[j] ?? 0) ? (a[i++] ?? 0) : (b[j++] ?? 0);
  out.set(a.subarray(i), k);
  out.set(b.subarray(j), k + a.length - i);
  return out;
}

/** Merges sorted arrays into one sorted array (pairwise, n log k). */
export function mergeSorted(arrays: readonly Float64Array[]): Float64Array {
  let runs = arrays.filter((a) => a.length > 0);
  if (!runs.length) return new Float64Array(0);
  while (runs.length > 1) {
    const next: Float64Array[] = [];
    for (let i = 0; i < runs.length; i += 2) {
      const a = runs[i] as Float64Array;
      const b = runs[i + 1];
      next.push(b ? merge2(a, b) : a);
    }
    runs = next;
  }
  return runs[0] as Float64Array;
}

/** The union of lists, aggregated into the fewest prefixes. */
export function union(lists: readonly PrefixList[]): PrefixList {
  const v4: number[] = [];
  aggregateSortedV4(mergeSorted(lists.map((l) => l.v4)), (addr, len) => v4.push(packV4(addr, len)));
  return { v4: Float64Array.from(v4), v6: aggregate(lists.flatMap((l) => l.v6)) };
}

export function unpackV4(p: number): Extract<Cidr, { family: 4 }> {
  return { family: 4, addr: packedAddr(p), len: packedLen(p) };
}

export function prefixCount(l: PrefixList): number {
  return l.v4.length + l.v6.length;
}

/** Every prefix as "address/length" text. */
export function formatPrefixes(l: PrefixList): string[] {
  const out: string[] = [];
  for (const p of l.v4) out.push(`${formatAddress(4, packedAddr(p))}/${packedLen(p)}`);
  for (const c of l.v6) out.push(formatCidr(c));
  return out;
}

/**
 * Answers "is this prefix wholly inside the union of those lists?" for many prefixes: the union
 * is turned once into disjoint sorted ranges, each question is a binary search.
 */
export class Coverage {
  private readonly v4lo: number[] = [];
  private readonly v4hi: number[] = [];
  private readonly v6: [bigint, bigint][] = [];

  constructor(lists: readonly PrefixList[]) {
    const u = union(lists);
    for (const p of u.v4) {
      const addr = packedAddr(p);
      const last = addr + v4BlockSize(packedLen(p)) - 1;
      const n = this.v4hi.length;
      // Aggregated prefixes can be adjacent (one range is several prefixes): join them.
      if (n && this.v4hi[n - 1] === addr - 1) this.v4hi[n - 1] = last;
      else {
        this.v4lo.push(addr);
        this.v4hi.push(last);
      }
    }
    for (const c of u.v6) if (c.family === 6) this.v6.push([c.addr, c.addr | v6HostMask(c.len)]);
  }

  covers(c: Cidr): boolean {
    if (c.family === 4) return this.coversV4(c.addr, c.len);
    const lo = c.addr;
    const hi = c.addr | v6HostMask(c.len);
    let l = 0;
    let r = this.v6.length - 1;
    while (l <= r) {
      const m = (l + r) >> 1;
      const range = this.v6[m] as [bigint, bigint];
      if (range[1] < lo) l = m + 1;
      else if (range[0] > lo) r = m - 1;
      else return hi <= range[1];
    }
    return false;
  }

  coversV4(addr: number, len: number): boolean {
    const hi = addr + v4BlockSize(len) - 1;
    let l = 0;
    let r = this.v4lo.length - 1;
    while (l <= r) {
      const m = (l + r) >> 1;
      if ((this.v4hi[m] ?? 0) < addr) l = m + 1;
      else if ((this.v4lo[m] ?? 0) > addr) r = m - 1;
      else return hi <= (this.v4hi[m] ?? 0);
    }
    return false;
  }
}
