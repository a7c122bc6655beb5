// The element audit's pure part: what a static address set holds in the kernel (`nft -j list
// set`, or `list sets table` for all of them), compared with what we applied. The terse drift
// check sees names and rule content, never elements (listing them costs about 4 ms per 1,000),
// so an element deleted or added by hand is only found by the audit (src/agent/setaudit.ts).
import { formatAddress, parseAddress } from "../net/cidr.js";
import type { NftJson } from "./executor.js";
import { elementDiff, textsOf } from "./plan.js";
import type { Elements } from "./transaction.js";

/** The elements of the named set in a `nft -j list set` answer; null when the set is not there.
 *  Our static sets hold plain addresses, printed as strings; an element someone added with a
 *  timeout or a comment is an object, whose address is its `elem.val`. */
export function listedElements(json: NftJson | null, set: string): string[] | null {
  for (const item of json?.nftables ?? []) {
    const s = item["set"];
    if (typeof s !== "object" || s === null || !("name" in s) || s.name !== set) continue;
    const elem: unknown = "elem" in s ? s.elem : [];
    const out: string[] = [];
    for (const e of Array.isArray(elem) ? elem : []) {
      if (typeof e === "string") out.push(e);
      else if (typeof e === "object" && e !== null && "elem" in e && typeof e.elem === "object" && e.elem !== null && "val" in e.elem && typeof e.elem.val === "string") out.push(e.elem.val);
    }
    return out;
  }
  return null;
}

export interface ElementDrift {
  /** Applied but not in the kernel: to add again. */
  missing: string[];
  /** In the kernel but not applied: to delete. */
  extra: string[];
}

/** The difference between the applied elements and the listed ones, compared in canonical form
 *  (nft prints addresses its own way); the planner's elementDiff does the comparing. */
export function elementDrift(applied: Elements, listed: readonly string[]): ElementDrift {
  const foreign: string[] = [];
  let have: Elements;
  let want: Elements;
  if (applied instanceof Uint32Array) {
    const v4: number[] = [];
    for (const a of listed) {
      const p = parseAddress(a);
      if (p?.family === 4) v4.push(p.addr);
      else foreign.push(a);
    }
    have = Uint32Array.from(v4).sort();
    want = Uint32Array.from(applied).sort();
  } else {
    have = listed.map(canonical);
    want = applied.map(canonical);
  }
  const { removed, added } = elementDiff(have, want);
  return { missing: [...textsOf(added)], extra: [...foreign, ...textsOf(removed)] };
}

function canonical(a: string): string {
  const p = parseAddress(a);
  return p ? formatAddress(p.family, p.addr) : a;
}
