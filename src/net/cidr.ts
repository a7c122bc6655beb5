// Pure IP address and prefix arithmetic: parsing, canonical printing, aggregation and
// the stride expansion used by the hash-set destination layout. IPv4 addresses are numbers
// (0 to 2^32-1, never negative) and IPv6 addresses bigints: large policies are mostly IPv4,
// and bigint arithmetic made compiling 100k IPv4 prefixes ten times slower.

export type Family = 4 | 6;

export type Cidr =
  | { readonly family: 4; readonly addr: number; readonly len: number } // network address, host bits zero
  | { readonly family: 6; readonly addr: bigint; readonly len: number };

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
const V4_SIZE = 2 ** 32;

export function bits(family: Family): number {
  return BITS[family];
}

/** A decimal number of at most 3 digits without leading zeros, or -1. */
function smallNumber(s: string, start: number, end: number): number {
  const n = end - start;
  if (n < 1 || n > 3 || (n > 1 && s.charCodeAt(start) === 48)) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** A dotted quad in s[start, end) as a number, or -1. */
function parseV4(s: string, start = 0, end = s.length): number {
  let v = 0;
  let from = start;
  for (let part = 0; part < 4; part++) {
    let to = from;
    while (to < end && s.charCodeAt(to) !== 46) to++;
    if ((part === 3) !== (to === end)) return -1;
    const octet = smallNumber(s, from, to);
    if (octet < 0 || octet > 255) return -1;
    v = v * 256 + octet;
    from = to + 1;
  }
  return v;
}

function parseV6(s: string): bigint | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  let head = s;
  let tail4: number | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    tail4 = parseV4(s, lastColon + 1);
    if (tail4 < 0) return null;
    head = s.slice(0, lastColon + 1) + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return null;
  const group = (h: string): string[] => (h === "" ? [] : h.split(":"));
  const left = group(halves[0] ?? "");
  const right = halves.length === 2 ? group(halves[1] ?? "") : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const groups = [...left, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...right];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail4 !== null) v = (v & ~0xffffffffn) | BigInt(tail4);
  return v;
}

/** Parses an address without prefix length. */
export function parseAddress(s: string): { family: 4; addr: number } | { family: 6; addr: bigint } | null {
  const v4 = parseV4(s);
  if (v4 >= 0) return { family: 4, addr: v4 };
  if (s.includes(":")) {
    const v6 = parseV6(s);
    if (v6 !== null) return { family: 6, addr: v6 };
  }
  return null;
}

export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; reason: string };

/** Parses "a.b.c.d/n", "x::/n" or a bare address (a host prefix). Host bits must be zero. */
export function parseCidr(s: string): CidrParse {
  const slash = s.indexOf("/");
  const addrEnd = slash < 0 ? s.length : slash;
  const v4 = parseV4(s, 0, addrEnd);
  const a = v4 >= 0 ? ({ family: 4, addr: v4 } as const) : parseAddress(s.slice(0, addrEnd));
  if (!a) return { ok: false, reason: `"${printable(s)}" is not an IPv4 or IPv6 address or CIDR` };
  const max = BITS[a.family];
  const len = slash < 0 ? max : smallNumber(s, slash + 1, s.length);
  if (len < 0 || len > max) return { ok: false, reason: `"${printable(s)}" has an invalid prefix length (0-${max})` };
  if (a.family === 4) {
    const net = a.addr - (a.addr % v4BlockSize(len));
    if (net === a.addr) return { ok: true, cidr: { family: 4, addr: a.addr, len } };
    return { ok: false, reason: hostBitsSet(s, { family: 4, addr: net, len }) };
  }
  const host = v6HostMask(len);
  if ((a.addr & host) === 0n) return { ok: true, cidr: { family: 6, addr: a.addr, len } };
  return { ok: false, reason: hostBitsSet(s, { family: 6, addr: a.addr & ~host, len }) };
}

function hostBitsSet(s: string, net: Cidr): string {
  return `"${printable(s)}" has host bits set; did you mean ${formatCidr(net)}?`;
}

function printable(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}...` : s.replace(/[^\x20-\x7e]/g, "?");
}

/** The host bits of an IPv6 prefix of this length. */
export function v6HostMask(len: number): bigint {
  return (1n << BigInt(128 - len)) - 1n;
}

function formatV4(a: number): string {
  // Bit operators read a number as 32 bits: right for 0..2^32-1, whatever its sign as int32.
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

function formatV6(addr: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((addr >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, leftmost on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}

/** Canonical text of an address (IPv4 as a number, IPv6 as a bigint). */
export function formatAddress(family: Family, addr: number | bigint): string {
  if (family === 4) return formatV4(Number(addr));
  return formatV6(BigInt(addr));
}

/** The netmask of a prefix length as address text, e.g. 255.255.240.0. */
export function formatMask(family: Family, len: number): string {
  if (family === 4) return formatV4(V4_SIZE - 2 ** (32 - len));
  return formatV6(((1n << 128n) - 1n) ^ v6HostMask(len));
}

export function formatCidr(c: Cidr): string {
  return `${formatAddress(c.family, c.addr)}/${c.len}`;
}

export function cidrKey(c: Cidr): string {
  return formatCidr(c);
}

// ---- IPv4 ranges as numbers ------------------------------------------------------------------

/**
 * IPv4 prefixes packed into one sortable number each (address * 64 + length), so that a list
 * of 100k sorts as a Float64Array instead of as objects.
 */
export function packV4(addr: number, len: number): number {
  return addr * 64 + len;
}

export function packedAddr(p: number): number {
  return Math.floor(p / 64);
}

export function packedLen(p: number): number {
  return p - Math.floor(p / 64) * 64;
}

/** 2^n for n = 0..32 (a table: `2 **` and `%` on doubles are slow in hot loops). */
const POW2: readonly number[] = Array.from({ length: 33 }, (_, n) => 2 ** n);

/** Addresses in an IPv4 prefix of this length. */
export function v4BlockSize(len: number): number {
  return POW2[32 - len] ?? 0;
}

/**
 * Merges packed IPv4 prefixes, sorted ascending, into the fewest prefixes covering the same
 * addresses; emits them in ascending order.
 */
export function aggregateSortedV4(sorted: ArrayLike<number>, emit: (addr: number, len: number) => void): void {
  let lo = -1;
  let hi = -2;
  for (let i = 0; i < sorted.length; i++) {
    const p = sorted[i] ?? 0;
    const addr = packedAddr(p);
    const last = addr + v4BlockSize(p - addr * 64) - 1;
    if (addr <= hi + 1) {
      if (last > hi) hi = last;
      continue;
    }
    if (lo >= 0) v4RangeToPrefixes(lo, hi, emit);
    lo = addr;
    hi = last;
  }
  if (lo >= 0) v4RangeToPrefixes(lo, hi, emit);
}

/** The fewest prefixes covering [lo, hi], ascending. */
function v4RangeToPrefixes(lo: number, hi: number, emit: (addr: number, len: number) => void): void {
  let cur = lo;
  while (cur <= hi) {
    // The largest block aligned at cur (its trailing zero bits) that still fits in the range.
    const align = cur === 0 ? 32 : 31 - Math.clz32(cur & -cur);
    const room = hi - cur + 1;
    const fit = room >= V4_SIZE ? 32 : 31 - Math.clz32(room);
    const size = Math.min(align, fit);
    emit(cur, 32 - size);
    cur += POW2[size] ?? 0;
  }
}

// ---- IPv6 ranges as bigints ------------------------------------------------------------------

function aggregateV6(cidrs: readonly Cidr[], out: Cidr[]): void {
  const ranges: [bigint, bigint][] = [];
  for (const c of cidrs) if (c.family === 6) ranges.push([c.addr, c.addr | v6HostMask(c.len)]);
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r[0] <= last[1] + 1n) {
      if (r[1] > last[1]) last[1] = r[1];
    } else merged.push([r[0], r[1]]);
  }
  for (const [lo, hi] of merged) {
    let cur = lo;
    while (cur <= hi) {
      let len = 128;
      // Grow the block while it stays aligned and inside the range.
      while (len > 0) {
        const mask = v6HostMask(len - 1);
        if ((cur & mask) !== 0n || (cur | mask) > hi) break;
        len--;
      }
      out.push({ family: 6, addr: cur, len });
      cur = (cur | v6HostMask(len)) + 1n;
    }
  }
}

// ---- both families -------------------------------------------------------------------------

/** Merges overlapping and adjacent prefixes into the fewest prefixes covering the same addresses. */
export function aggregate(cidrs: readonly Cidr[]): Cidr[] {
  const out: Cidr[] = [];
  const packed: number[] = [];
  for (const c of cidrs) if (c.family === 4) packed.push(packV4(c.addr, c.len));
  aggregateSortedV4(Float64Array.from(packed).sort(), (addr, len) => out.push({ family: 4, addr, len }));
  aggregateV6(cidrs, out);
  return out;
}

/** Stride lengths used for hash-set lookups: every 4 bits, so a prefix expands to at most 8 entries. */
export function strideFor(len: number): number {
  return Math.ceil(len / 4) * 4;
}

/**
 * Expands prefixes to stride lengths: returns, per stride length, the network addresses that a
 * masked lookup at that length must find, ascending. Input should be aggregated first.
 */
export function expandToStrides(cidrs: readonly Cidr[]): Map<number, (number | bigint)[]> {
  const out = new Map<number, (number | bigint)[]>();
  for (const c of cidrs) {
    const stride = strideFor(c.len);
    const list = out.get(stride) ?? [];
    const count = 2 ** (stride - c.len);
    if (c.family === 4) {
      const step = 2 ** (32 - stride);
      for (let i = 0; i < count; i++) list.push(c.addr + i * step);
    } else {
      const step = 1n << BigInt(128 - stride);
      for (let i = 0n; i < BigInt(count); i++) list.push(c.addr + i * step);
    }
    out.set(stride, list);
  }
  for (const list of out.values()) list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return out;
}

export function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.len > inner.len) return false;
  if (outer.family === 4 && inner.family === 4) return inner.addr - (inner.addr % 2 ** (32 - outer.len)) === outer.addr;
  if (outer.family === 6 && inner.family === 6) return (inner.addr & ~v6HostMask(outer.len)) === outer.addr;
  return false;
}
