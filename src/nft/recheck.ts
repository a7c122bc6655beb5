// How a change re-checks established flows (README, "Revocation"): the two chains the guard
// and every accept use, in one of two layouts.
// - flows (default): every accepted flow's conntrack id is recorded in the dynamic set
//   `flows`; the guard passes an established flow only when it is recorded, and every
//   transaction that changes anything empties the set. No bit of the conntrack entry is used.
// - mark (`--revocation-mark MASK`): the bits of MASK in the conntrack mark hold the epoch the
//   flow was last accepted in; the guard passes an established flow only when they equal the
//   current epoch, and every transaction that changes anything moves to the next epoch. A
//   flow of an older epoch meets the rules once more and, accepted, is stamped with the
//   current one; the other bits of the mark are never changed. Cheaper per packet (no set
//   lookup, no insert), at the price of bits the operator reserves for nftegress.
// Pure: the compiler builds the chains with it, the planner stamps the next epoch with it, the
// agent reads the kernel's epoch back from nft's JSON of the accepted chain (never from text).
import type { NftJson } from "./executor.js";
import { ruleSpec, type ChainSpec, type Ruleset, type SetSpec } from "./ruleset.js";
import { ACCEPT_CHAIN, ESTABLISHED_CHAIN, FLOWS_SET } from "../policy/names.js";

export interface MarkRecheck {
  /** Contiguous bits of the conntrack mark reserved for nftegress. */
  mask: number;
  /** 1 .. mask >> shift: the epoch of the rules; 0 is never one (a mark nobody stamped). */
  epoch: number;
}

// Accepted flows (flows layout): a full set only costs speed (a flow not recorded is checked
// at every packet). A flow stays recorded while it sends (each packet refreshes its entry);
// one idle this long is simply checked again at its next packet.
const FLOWS_SIZE = 262144;
const FLOWS_TIMEOUT = "30s";

const rule = ruleSpec;

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

/** The mask's lowest bit and the largest epoch it holds; null when not 8 to 24 contiguous bits. */
export function markField(mask: number): { shift: number; max: number } | null {
  if (!Number.isInteger(mask) || mask <= 0 || mask > 0xffffffff) return null;
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  const width = Math.log2((mask >>> shift) + 1);
  if (!Number.isInteger(width) || width < 8 || width > 24) return null;
  return { shift, max: 2 ** width - 1 };
}

/** The epoch after `epoch`: every value of the field in turn, never 0. */
export function nextEpoch(mask: number, epoch: number): number {
  const f = markField(mask);
  if (!f) throw new Error(`not a revocation mark mask: ${hex(mask)}`);
  return epoch >= f.max || epoch < 1 ? 1 : epoch + 1;
}

/** The established and accepted chains, and the set they use (flows layout only). */
export function recheckObjects(mark: MarkRecheck | undefined): { chains: ChainSpec[]; sets: SetSpec[] } {
  if (!mark) {
    return {
      chains: [
        { name: ESTABLISHED_CHAIN, rules: [rule("ct direction reply accept", "guard:replies"), rule(`ct id @${FLOWS_SET} update @${FLOWS_SET} { ct id } accept`, "guard:recorded")] },
        // Two rules: a full set makes the recording rule stop, never the accept.
        { name: ACCEPT_CHAIN, rules: [rule(`update @${FLOWS_SET} { ct id }`, "accepted:record"), rule("accept", "accepted")] },
      ],
      sets: [{ name: FLOWS_SET, keyType: "ct id", keyOf: true, dynamic: true, flags: ["dynamic", "timeout"], timeout: FLOWS_TIMEOUT, size: FLOWS_SIZE, elements: [] }],
    };
  }
  const f = markField(mark.mask);
  if (!f || mark.epoch < 1 || mark.epoch > f.max) throw new Error(`bad revocation mark ${hex(mark.mask)} epoch ${mark.epoch}`);
  const bits = hex(mark.epoch * 2 ** f.shift);
  return {
    chains: [
      { name: ESTABLISHED_CHAIN, rules: [rule("ct direction reply accept", "guard:replies"), rule(`ct mark and ${hex(mark.mask)} == ${bits} accept`, "guard:current-epoch")] },
      { name: ACCEPT_CHAIN, rules: [rule(`ct mark set ct mark and ${hex(~mark.mask)} or ${bits}`, "accepted:stamp"), rule("accept", "accepted")] },
    ],
    sets: [],
  };
}

/** The ruleset with its recheck chains at `epoch` (mark layout; others unchanged). */
export function withEpoch(r: Ruleset, epoch: number): Ruleset {
  if (!r.recheckMark) return r;
  const mark = { mask: r.recheckMark.mask, epoch };
  const fresh = new Map(recheckObjects(mark).chains.map((c) => [c.name, c]));
  return { ...r, recheckMark: mark, chains: r.chains.map((c) => fresh.get(c.name) ?? c) };
}

/**
 * The epoch the kernel's table is at: the bits the accepted chain's first rule stamps (nft
 * lists `ct mark set ct mark & X | BITS`), when that rule keeps exactly the other bits of
 * `mask`. null when the table has no such rule (another layout, another mask, or none).
 */
export function kernelEpoch(json: NftJson, mask: number): number | null {
  const f = markField(mask);
  if (!f) return null;
  for (const item of json.nftables) {
    const r = item["rule"];
    if (typeof r !== "object" || r === null || !("chain" in r) || r.chain !== ACCEPT_CHAIN || !("expr" in r) || !Array.isArray(r.expr)) continue;
    const first: unknown = r.expr[0];
    const value = typeof first === "object" && first !== null && "mangle" in first ? pick(first.mangle, "value") : undefined;
    const or = pick(value, "|");
    if (!Array.isArray(or) || or.length !== 2) return null;
    const [kept, bits] = or as unknown[];
    const and = pick(kept, "&");
    if (typeof bits !== "number" || !Array.isArray(and) || typeof and[1] !== "number") return null;
    // nft may fold the stamped bits into the kept ones: (mark & ~mask) | bits == (mark & (~mask | bits)) | bits.
    const keep = and[1] as number;
    const folded = ((keep & mask) >>> 0) === 0 || ((keep & mask) >>> 0) === ((bits & mask) >>> 0);
    if (((keep | mask) >>> 0) !== 0xffffffff || ((bits & ~mask) >>> 0) !== 0 || !folded) return null;
    const epoch = (bits & mask) >>> 0 >>> f.shift;
    return epoch >= 1 && epoch <= f.max ? epoch : null;
  }
  return null;
}

function pick(o: unknown, key: string): unknown {
  return typeof o === "object" && o !== null && key in o ? (o as Record<string, unknown>)[key] : undefined;
}
