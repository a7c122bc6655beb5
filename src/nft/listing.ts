// Parses `nft -j` listings of our table into what the agent needs: object names, rule
// comments per chain (drift), policy jump comments (status), counter and set values.
import { z } from "zod";
import type { NftJson } from "./executor.js";
import type { Ruleset } from "./ruleset.js";

const Named = z.looseObject({ name: z.string() });
const RuleObj = z.looseObject({ chain: z.string(), comment: z.string().optional(), expr: z.array(z.unknown()).optional() });
const CounterObj = z.looseObject({ name: z.string(), packets: z.number(), bytes: z.number() });
const ElemCounter = z.looseObject({ packets: z.number(), bytes: z.number() });
const SetObj = z.looseObject({
  name: z.string(),
  elem: z.array(z.unknown()).optional(),
});
const Elem = z.looseObject({ elem: z.looseObject({ val: z.unknown(), counter: ElemCounter.optional() }) });

export interface TableListing {
  chains: Set<string>;
  sets: Set<string>;
  counters: Set<string>;
  /** chain -> rule comments in order */
  rules: Map<string, string[]>;
  /** jump targets of the output chain with their comments, in order */
  jumps: { target: string; comment: string }[];
  /** The table object carries flags (nft 1.0.6 prints their value wrongly; see read.ts). */
  flagged: boolean;
}

export function parseTable(json: NftJson): TableListing {
  const out: TableListing = { chains: new Set(), sets: new Set(), counters: new Set(), rules: new Map(), jumps: [], flagged: false };
  for (const item of json.nftables) {
    if ("table" in item) {
      const t = item["table"];
      out.flagged = typeof t === "object" && t !== null && "flags" in t;
    } else if ("chain" in item) out.chains.add(Named.parse(item["chain"]).name);
    else if ("set" in item) out.sets.add(Named.parse(item["set"]).name);
    else if ("counter" in item) out.counters.add(Named.parse(item["counter"]).name);
    else if ("rule" in item) {
      const r = RuleObj.parse(item["rule"]);
      const list = out.rules.get(r.chain) ?? [];
      list.push(r.comment ?? "");
      out.rules.set(r.chain, list);
      if (r.chain === "output") {
        for (const e of r.expr ?? []) {
          const j = z.object({ jump: z.object({ target: z.string() }) }).safeParse(e);
          if (j.success) out.jumps.push({ target: j.data.jump.target, comment: r.comment ?? "" });
        }
      }
    }
  }
  return out;
}

/** Differences between what the kernel holds and what we applied (empty: no drift). */
export function drift(applied: Ruleset, kernel: TableListing): string[] {
  const out: string[] = [];
  for (const c of applied.chains) {
    if (!kernel.chains.has(c.name)) {
      out.push(`chain ${c.name} missing`);
      continue;
    }
    const want = c.rules.map((r) => r.comment);
    const have = kernel.rules.get(c.name) ?? [];
    if (want.length !== have.length || want.some((w, i) => w !== have[i])) out.push(`chain ${c.name} rules differ`);
  }
  for (const s of applied.sets) if (!kernel.sets.has(s.name)) out.push(`set ${s.name} missing`);
  for (const n of applied.counters) if (!kernel.counters.has(n)) out.push(`counter ${n} missing`);
  return out;
}

export interface CounterValue {
  packets: number;
  bytes: number;
}

export function parseCounters(json: NftJson | null): Map<string, CounterValue> {
  const out = new Map<string, CounterValue>();
  for (const item of json?.nftables ?? []) {
    if (!("counter" in item)) continue;
    const c = CounterObj.parse(item["counter"]);
    out.set(c.name, { packets: c.packets, bytes: c.bytes });
  }
  return out;
}

export interface SetElementCount {
  key: (string | number)[];
  packets: number;
  bytes: number;
}

export function parseSetElements(json: NftJson | null): SetElementCount[] {
  const out: SetElementCount[] = [];
  for (const item of json?.nftables ?? []) {
    if (!("set" in item)) continue;
    for (const raw of SetObj.parse(item["set"]).elem ?? []) {
      const e = Elem.safeParse(raw);
      if (!e.success) continue;
      const val = e.data.elem.val;
      const concat = z.object({ concat: z.array(z.union([z.string(), z.number()])) }).safeParse(val);
      const key = concat.success ? concat.data.concat : typeof val === "string" || typeof val === "number" ? [val] : [];
      out.push({ key, packets: e.data.elem.counter?.packets ?? 0, bytes: e.data.elem.counter?.bytes ?? 0 });
    }
  }
  return out;
}
