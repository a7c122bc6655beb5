// Plans the transaction that turns the kernel's table into the desired ruleset (pure).
// - full: declare everything (idempotent `add`), flush and refill our chains and static sets.
// - incremental (the previous applied ruleset is known and the kernel still matches it):
//   rewrite only changed chains and send element diffs, so a one-CIDR change to a 100k set
//   costs one element operation.
// Objects no longer wanted are flushed in the main transaction and deleted in a follow-up.
import type { ChainSpec, Ruleset, SetSpec } from "./ruleset.js";
import type { Op, Transaction } from "./transaction.js";

export interface Existing {
  chains: ReadonlySet<string>;
  sets: ReadonlySet<string>;
  counters: ReadonlySet<string>;
}

export interface Plan {
  main: Transaction;
  cleanup: Transaction;
  mode: "full" | "incremental";
  changedElements: number;
}

function declareSet(s: SetSpec): Op {
  const { name, keyType, flags, timeout, size, counter } = s;
  return {
    verb: "add",
    object: {
      type: "set",
      name,
      keyType,
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
  return { main, cleanup: st.cleanup, mode: "full", changedElements };
}

function sameRules(a: ChainSpec | undefined, b: ChainSpec): boolean {
  if (!a || a.rules.length !== b.rules.length) return false;
  return a.rules.every((r, i) => r.expr === b.rules[i]?.expr && r.comment === b.rules[i]?.comment);
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
    if (s.dynamic) continue;
    const before = new Set(prev.elements);
    const after = new Set(s.elements);
    const removed = prev.elements.filter((e) => !after.has(e));
    const added = s.elements.filter((e) => !before.has(e));
    if (removed.length) elementOps.push({ verb: "delete", object: { type: "element", set: s.name, elements: removed } });
    if (added.length) elementOps.push({ verb: "add", object: { type: "element", set: s.name, elements: added } });
    changedElements += removed.length + added.length;
  }
  main.push(...elementOps);
  const st = stale(desired, existing);
  main.push(...st.main);
  for (const c of desired.chains) if (!sameRules(prevChains.get(c.name), c) || !existing.chains.has(c.name)) main.push(...fillChain(c));
  return { main, cleanup: st.cleanup, mode: "incremental", changedElements };
}
