// Pure IP address and prefix arithmetic: parsing, canonical printing, aggregation and the
// stride expansion used by the hash-set destination layout. Addresses are bigints.

export type Family = 4 | 6;

export interface Cidr {
  readonly family: Family;
  readonly addr: bigint; // network address, host bits zero
  readonly len: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export function bits(family: Family): number {
  return BITS[family];
}

function parseV4(s: string): bigint | null {
  const parts = s.split(".");
  if (parts.length !== 4) return null;
  let v = 0n;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = (v << 8n) | BigInt(n);
  }
  return v;
}

function parseV6(s: string): bigint | null {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return null;
  let head = s;
  let tail4: bigint | null = null;
  const lastColon = s.lastIndexOf(":");
  if (s.includes(".")) {
    tail4 = parseV4(s.slice(lastColon + 1));
    if (tail4 === null) return null;
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
  if (tail4 !== null) v = (v & ~0xffffffffn) | tail4;
  return v;
}

/** Parses an address without prefix length. */
export function parseAddress(s: string): { family: Family; addr: bigint } | null {
  const v4 = parseV4(s);
  if (v4 !== null) return { family: 4, addr: v4 };
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
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const a = parseAddress(addrText);
  if (!a) return { ok: false, reason: `"${printable(s)}" is not an IPv4 or IPv6 address or CIDR` };
  const max = BITS[a.family];
  let len = max;
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText) || Number(lenText) > max) {
      return { ok: false, reason: `"${printable(s)}" has an invalid prefix length (0-${max})` };
    }
    len = Number(lenText);
  }
  const host = hostMask(a.family, len);
  if ((a.addr & host) !== 0n) {
    const net = { family: a.family, addr: a.addr & ~host, len };
    return { ok: false, reason: `"${printable(s)}" has host bits set; did you mean ${formatCidr(net)}?` };
  }
  return { ok: true, cidr: { family: a.family, addr: a.addr, len } };
}

function printable(s: string): string {
  return s.length > 60 ? `${s.slice(0, 60)}...` : s.replace(/[^\x20-\x7e]/g, "?");
}

export function hostMask(family: Family, len: number): bigint {
  return (1n << BigInt(BITS[family] - len)) - 1n;
}

export function netMask(family: Family, len: number): bigint {
  return ((1n << BigInt(BITS[family])) - 1n) ^ hostMask(family, len);
}

export function formatAddress(family: Family, addr: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((sh) => String((addr >> sh) & 255n)).join(".");
  }
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

export function formatCidr(c: Cidr): string {
  return `${formatAddress(c.family, c.addr)}/${c.len}`;
}

export function cidrKey(c: Cidr): string {
  return formatCidr(c);
}

/** Merges overlapping and adjacent prefixes into the fewest prefixes covering the same addresses. */
export function aggregate(cidrs: readonly Cidr[]): Cidr[] {
  const out: Cidr[] = [];
  for (const family of [4, 6] as const) {
    const ranges = cidrs
      .filter((c) => c.family === family)
      .map((c) => [c.addr, c.addr | hostMask(family, c.len)] as [bigint, bigint])
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged: [bigint, bigint][] = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      if (last && r[0] <= last[1] + 1n) {
        if (r[1] > last[1]) last[1] = r[1];
      } else merged.push([r[0], r[1]]);
    }
    for (const [lo, hi] of merged) out.push(...rangeToCidrs(family, lo, hi));
  }
  return out;
}

function rangeToCidrs(family: Family, lo: bigint, hi: bigint): Cidr[] {
  const max = BITS[family];
  const out: Cidr[] = [];
  let cur = lo;
  while (cur <= hi) {
    let len = max;
    // Grow the block while it stays aligned and inside the range.
    while (len > 0) {
      const next = len - 1;
      const mask = hostMask(family, next);
      if ((cur & mask) !== 0n || (cur | mask) > hi) break;
      len = next;
    }
    out.push({ family, addr: cur, len });
    cur = (cur | hostMask(family, len)) + 1n;
  }
  return out;
}

/** Stride lengths used for hash-set lookups: every 4 bits, so a prefix expands to at most 8 entries. */
export function strideFor(len: number): number {
  return Math.ceil(len / 4) * 4;
}

/**
 * Expands prefixes to stride lengths: returns, per stride length, the network addresses that a
 * masked lookup at that length must find. Input should be aggregated first.
 */
export function expandToStrides(cidrs: readonly Cidr[]): Map<number, bigint[]> {
  const out = new Map<number, bigint[]>();
  for (const c of cidrs) {
    const stride = strideFor(c.len);
    const list = out.get(stride) ?? [];
    const count = 1n << BigInt(stride - c.len);
    const step = 1n << BigInt(BITS[c.family] - stride);
    for (let i = 0n; i < count; i++) list.push(c.addr + i * step);
    out.set(stride, list);
  }
  for (const list of out.values()) list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return out;
}

export function contains(outer: Cidr, inner: Cidr): boolean {
  if (outer.family !== inner.family || outer.len > inner.len) return false;
  const mask = netMask(outer.family, outer.len);
  return (inner.addr & mask) === outer.addr;
}
