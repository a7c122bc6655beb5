// Plans the transaction that turns the kernel's table into the desired ruleset (pure).
// - full: declare everything (idempotent `add`), flush and refill our chains and static sets.
// - incremental (the previous applied ruleset is known and the kernel still matches it):
//   rewrite only changed chains and send element diffs, so a one-CIDR change to a 100k set
//   costs one element operation.
// Objects no longer wanted are flushed in the main transaction and deleted in a follow-up.
import type { ChainSpec, Ruleset, SetSpec } from "./ruleset.js";
import type { Elements, Op, Transaction } from "./transaction.js";
import { formatAddress } from "../net/cidr.js";
import { diffSorted } from "../net/sorted.js";
import { nextEpoch, recheckObjects, withEpoch } from "./recheck.js";

export interface Existing {
  chains: ReadonlySet<string>;
  sets: ReadonlySet<string>;
  counters: ReadonlySet<string>;
}

export interface Plan {
  main: Transaction;
  /** What the kernel holds once main commits: the desired ruleset, in the mark layout of
   *  revocation at its next epoch when main changes anything (see withRecheck). */
  ruleset: Ruleset;
  cleanup: Transaction;
  mode: "full" | "incremental";
  changedElements: number;
}

function declareSet(s: SetSpec): Op {
  const { name, keyType, keyOf, flags, timeout, size, counter } = s;
  return {
    verb: "add",
    object: {
      type: "set",
      name,
      keyType,
      ...(keyOf ? { keyOf } : {}),
      ...(flags ? { flags } : {}),
      ...(timeout ? { timeout } : {}),
      ...(size ? { size } : {}),
      ...(counter ? { counter } : {}),
    },
  };
}

function declarations(desired: Ruleset): Op[] {
  const ops: Op[] = [{ verb: "add", object: { type: "table", comment: desired.comment } }];
  for (const c of desired.chains) {
    ops.push({ verb: "add", object: { type: "chain", name: c.name, ...(c.base ? { base: c.base } : {}) } });
  }
  for (const n of desired.counters) ops.push({ verb: "add", object: { type: "counter", name: n } });
  for (const s of desired.sets) ops.push(declareSet(s));
  return ops;
}

function fillChain(c: ChainSpec): Op[] {
  return [
    { verb: "flush", object: { type: "chain", name: c.name } },
    ...c.rules.map((r): Op => ({ verb: "add", object: { type: "rule", chain: c.name, expr: r.expr, comment: r.comment } })),
  ];
}

function stale(desired: Ruleset, existing: Existing): { main: Op[]; cleanup: Op[] } {
  const wantChains = new Set(desired.chains.map((c) => c.name));
  const wantSets = new Set(desired.sets.map((s) => s.name));
  const wantCounters = new Set(desired.counters);
  const main: Op[] = [];
  const cleanup: Op[] = [];
  for (const c of [...existing.chains].sort()) {
    if (wantChains.has(c)) continue;
    main.push({ verb: "flush", object: { type: "chain", name: c } });
    cleanup.push({ verb: "delete", object: { type: "chain", name: c } });
  }
  for (const s of [...existing.sets].sort()) {
    if (!wantSets.has(s)) cleanup.push({ verb: "delete", object: { type: "set", name: s } });
  }
  for (const n of [...existing.counters].sort()) {
    if (!wantCounters.has(n)) cleanup.push({ verb: "delete", object: { type: "counter", name: n } });
  }
  return { main, cleanup };
}

export function planFull(desired: Ruleset, existing: Existing): Plan {
  const main = declarations(desired);
  const st = stale(desired, existing);
  main.push(...st.main);
  let changedElements = 0;
  for (const s of desired.sets) {
    if (s.dynamic) continue;
    if (existing.sets.has(s.name)) main.push({ verb: "flush", object: { type: "set", name: s.name } });
    if (s.elements.length) main.push({ verb: "add", object: { type: "element", set: s.name, elements: s.elements } });
    changedElements += s.elements.length;
  }
  for (const c of desired.chains) main.push(...fillChain(c));
  return { ...withRecheck(desired, main), cleanup: st.cleanup, mode: "full", changedElements };
}

/**
 * Revocation (src/nft/recheck.ts): a transaction that changes anything also, in the same
 * commit, empties the set of accepted flows, or (mark layout) moves the recheck chains to the
 * next epoch, so every established flow meets the new rules at its next packet (those still
 * allowed are recorded or stamped again, those now denied stop). Nothing changed: nothing sent.
 */
export function withRecheck(desired: Ruleset, main: Transaction): { main: Transaction; ruleset: Ruleset } {
  if (!main.length) return { main, ruleset: desired };
  if (desired.recheckMark) {
    const next = withEpoch(desired, nextEpoch(desired.recheckMark.mask, desired.recheckMark.epoch));
    const recheck = new Set(recheckObjects(next.recheckMark).chains.map((c) => c.name));
    const kept = main.filter((op) => !((op.verb === "flush" && op.object.type === "chain" && recheck.has(op.object.name)) || (op.object.type === "rule" && recheck.has(op.object.chain))));
    const refill = next.chains.filter((c) => recheck.has(c.name)).flatMap(fillChain);
    return { main: [...kept, ...refill], ruleset: next };
  }
  if (!desired.acceptedFlows) return { main, ruleset: desired };
  return { main: [...main, { verb: "flush", object: { type: "set", name: desired.acceptedFlows } }], ruleset: desired };
}

function sameRules(a: ChainSpec | undefined, b: ChainSpec): boolean {
  if (!a || a.rules.length !== b.rules.length) return false;
  return a.rules.every((r, i) => r.expr === b.rules[i]?.expr && r.comment === b.rules[i]?.comment);
}

/**
 * Elements only in `before` and only in `after`. Lists the compiler built from nearly the same
 * input share a long head and tail (they are sorted), so only the middle is compared as sets.
 */
export function elementDiff(before: Elements, after: Elements): { removed: Elements; added: Elements } {
  if (before instanceof Uint32Array && after instanceof Uint32Array) return sortedDiff(before, after);
  const was = textsOf(before);
  const now = textsOf(after);
  let head = 0;
  while (head < was.length && head < now.length && was[head] === now[head]) head++;
  let tail = 0;
  while (tail < was.length - head && tail < now.length - head && was[was.length - 1 - tail] === now[now.length - 1 - tail]) tail++;
  const wasMid = was.slice(head, was.length - tail);
  const nowMid = now.slice(head, now.length - tail);
  const wasSet = new Set(wasMid);
  const nowSet = new Set(nowMid);
  return { removed: wasMid.filter((e) => !nowSet.has(e)), added: nowMid.filter((e) => !wasSet.has(e)) };
}

/** Elements only in a and only in b, both ascending. */
function sortedDiff(a: Uint32Array, b: Uint32Array): { removed: Uint32Array; added: Uint32Array } {
  const { removed, added } = diffSorted(a, b);
  return { removed: Uint32Array.from(removed), added: Uint32Array.from(added) };
}

/** Elements as nft prints them. */
export function textsOf(e: Elements): readonly string[] {
  return e instanceof Uint32Array ? Array.from(e, (a) => formatAddress(4, a)) : e;
}

export function planIncremental(previous: Ruleset, desired: Ruleset, existing: Existing): Plan {
  const main: Op[] = [];
  const prevChains = new Map(previous.chains.map((c) => [c.name, c]));
  const prevSets = new Map(previous.sets.map((s) => [s.name, s]));
  if (previous.comment !== desired.comment) main.push({ verb: "add", object: { type: "table", comment: desired.comment } });
  for (const c of desired.chains) {
    if (!existing.chains.has(c.name)) main.push({ verb: "add", object: { type: "chain", name: c.name, ...(c.base ? { base: c.base } : {}) } });
  }
  for (const n of desired.counters) if (!existing.counters.has(n)) main.push({ verb: "add", object: { type: "counter", name: n } });
  let changedElements = 0;
  const elementOps: Op[] = [];
  for (const s of desired.sets) {
    const prev = prevSets.get(s.name);
    if (!existing.sets.has(s.name) || !prev) {
      main.push(declareSet(s));
      if (existing.sets.has(s.name) && !s.dynamic) elementOps.push({ verb: "flush", object: { type: "set", name: s.name } });
      if (!s.dynamic && s.elements.length) elementOps.push({ verb: "add", object: { type: "element", set: s.name, elements: s.elements } });
      changedElements += s.elements.length;
      continue;
    }
    if (s.dynamic || prev.elements === s.elements) continue;
    const { removed, added } = elementDiff(prev.elements, s.elements);
    if (removed.length) elementOps.push({ verb: "delete", object: { type: "element", set: s.name, elements: removed } });
    if (added.length) elementOps.push({ verb: "add", object: { type: "element", set: s.name, elements: added } });
    changedElements += removed.length + added.length;
  }
  main.push(...elementOps);
  const st = stale(desired, existing);
  main.push(...st.main);
  for (const c of desired.chains) if (!sameRules(prevChains.get(c.name), c) || !existing.chains.has(c.name)) main.push(...fillChain(c));
  return { ...withRecheck(desired, main), cleanup: st.cleanup, mode: "incremental", changedElements };
}
