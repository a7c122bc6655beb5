// Isolation (design s3): when the kernel refuses a transaction that the schema and the compiler
// let through, find the policies at fault by bisecting, so the others can still be applied.
// The core is pure: it only calls `check(subset)`, which says whether a ruleset built from that
// subset of policies is accepted (the agent checks with `nft --check`, which the kernel
// validates without applying).
import { planFull } from "../nft/plan.js";
import type { Ruleset } from "../nft/ruleset.js";
import { FAMILY, TABLE, render } from "../nft/transaction.js";

/** null: the subset is accepted; a string: why it is refused (nft's message). */
export type SubsetCheck<T> = (subset: readonly T[]) => Promise<string | null>;

export interface Isolation<T> {
  /** The items at fault, each with the message of the smallest refused check that held it. */
  faulty: Map<T, string>;
  /** How many checks ran. */
  checks: number;
}

/**
 * Finds the items whose presence makes `check` fail, assuming a subset fails exactly when it
 * holds at least one faulty item (each policy is its own chains and sets). One faulty item
 * among n costs at most 2*ceil(log2 n) + 3 checks; several cost about that each.
 *
 * Returns null when the refusal cannot be traced to items: the whole set is accepted when
 * checked on its own (the refusal came from the kernel's state, not the policies), the empty
 * set is refused too (the guard or the table itself), or what is left after removing every
 * faulty item is still refused (items that fail only together).
 */
export async function isolate<T>(items: readonly T[], check: SubsetCheck<T>, maxRounds = 3): Promise<Isolation<T> | null> {
  let checks = 0;
  const run = (subset: readonly T[]): Promise<string | null> => {
    checks++;
    return check(subset);
  };
  const faulty = new Map<T, string>();

  /** `set` is known to be refused with `why`; `own` says whether `why` came from checking exactly it. */
  const search = async (set: readonly T[], why: string, own: boolean): Promise<void> => {
    if (set.length === 1) {
      const [only] = set as [T];
      // An inherited message may be another item's: check this one alone for its own.
      const mine = own ? why : await run(set);
      if (mine !== null) faulty.set(only, mine);
      return;
    }
    const half = Math.ceil(set.length / 2);
    const left = set.slice(0, half);
    const right = set.slice(half);
    const l = await run(left);
    if (l === null) return search(right, why, false); // the refusal is in the right half
    await search(left, l, true);
    const r = await run(right);
    if (r !== null) await search(right, r, true);
  };

  let first = await run(items);
  if (first === null) return null;
  if ((await run([])) !== null) return null;
  let remaining = [...items];
  for (let round = 0; round < maxRounds; round++) {
    const before = faulty.size;
    await search(remaining, first, true);
    if (faulty.size === before) return null;
    remaining = remaining.filter((i) => !faulty.has(i));
    const again = remaining.length ? await run(remaining) : null;
    if (again === null) return { faulty, checks };
    first = again;
  }
  return null;
}

/**
 * The script that checks a ruleset on its own, whatever the kernel holds now: the table is
 * declared, deleted and built afresh in one transaction, which `nft --check` validates in the
 * kernel and never commits.
 */
export function checkScript(ruleset: Ruleset): string {
  const fresh = planFull(ruleset, { chains: new Set(), sets: new Set(), counters: new Set() });
  return `add table ${FAMILY} ${TABLE}\ndelete table ${FAMILY} ${TABLE}\n${render(fresh.main)}`;
}
