// The desired state of our table, as the compiler produces it and the planner diffs it.
import { createHash } from "node:crypto";
import type { BaseChain, Elements } from "./transaction.js";

export interface RuleSpec {
  expr: string;
  comment: string;
}

/** A rule with its comment: the label (cut at 100 characters) and a hash of the expression, so
 *  that drift detection sees a changed rule under an unchanged label. */
export function ruleSpec(expr: string, label: string): RuleSpec {
  return { expr, comment: `${label.slice(0, 100)} h:${createHash("sha256").update(expr).digest("hex").slice(0, 8)}` };
}

export interface ChainSpec {
  name: string;
  base?: BaseChain;
  rules: RuleSpec[];
}

export interface SetSpec {
  name: string;
  /** The key's datatype (`type ...`), or, with keyOf, the expression it is taken from (`typeof ...`). */
  keyType: string;
  keyOf?: boolean;
  /** Dynamic sets (denied destinations/uids) are declared once and never flushed. */
  dynamic: boolean;
  flags?: string[];
  timeout?: string;
  size?: number;
  counter?: boolean;
  elements: Elements;
}

export interface Ruleset {
  comment: string;
  chains: ChainSpec[];
  sets: SetSpec[];
  counters: string[];
  /**
   * The dynamic set of flows accepted under these rules, which the guard lets pass as
   * established. Every transaction that changes anything empties it in the same commit, so
   * each established flow is checked once more against the new rules (see compile.ts).
   */
  acceptedFlows?: string;
  /** The mark layout of revocation instead (src/nft/recheck.ts): the mask and the epoch. */
  recheckMark?: { mask: number; epoch: number };
  /** Policy id -> name of the policies in these rules (kept outside the table: see
   *  src/host/policynames.ts). */
  policyNames?: Readonly<Record<string, string>>;
}

export function elementCount(r: Ruleset): number {
  return r.sets.reduce((n, s) => n + s.elements.length, 0);
}

/** A sha256 (hex) of the whole ruleset; numeric set elements are hashed as their bytes. */
export function rulesetHash(r: Ruleset): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ comment: r.comment, chains: r.chains, counters: r.counters, sets: r.sets.map(({ elements: _, ...decl }) => decl) }));
  for (const s of r.sets) {
    h.update(`\n${s.name}\n`);
    if (s.elements instanceof Uint32Array) h.update(new Uint8Array(s.elements.buffer, s.elements.byteOffset, s.elements.byteLength));
    else h.update(s.elements.join(","));
  }
  return h.digest("hex");
}
