// Parses `nft -j` listings of our table into what the agent needs: object names, rule
// comments and content prints per chain (drift), policy jump comments (status), counter and set
// values.
import { createHash } from "node:crypto";
import { z } from "zod";
import type { NftJson } from "./executor.js";
import type { Ruleset } from "./ruleset.js";

const ElemCounter = z.looseObject({ packets: z.number(), bytes: z.number() });
const SetObj = z.looseObject({
  name: z.string(),
  elem: z.array(z.unknown()).optional(),
});
const Elem = z.looseObject({ elem: z.looseObject({ val: z.unknown(), counter: ElemCounter.optional() }) });
const Concat = z.object({ concat: z.array(z.union([z.string(), z.number()])) });

export interface TableListing {
  chains: Set<string>;
  sets: Set<string>;
  counters: Set<string>;
  /** chain -> rule comments in order */
  rules: Map<string, string[]>;
  /** chain -> what nft itself lists for it: base-chain properties and each rule's content */
  prints: Map<string, ChainPrint>;
  /** jump targets of the output chain with their comments, in order */
  jumps: { target: string; comment: string }[];
  /** The table object carries flags (nft 1.0.6 prints their value wrongly; see read.ts). */
  flagged: boolean;
}

/**
 * The items of one table in a listing of the whole ruleset (`nft -j -t list ruleset`); null when
 * the table is not there.
 */
export function tableItems(json: NftJson, family: string, table: string): NftJson | null {
  const mine = json.nftables.filter((item) => {
    for (const kind in item) {
      const o = item[kind];
      if (typeof o !== "object" || o === null) return false;
      return "family" in o && o.family === family && (kind === "table" ? "name" in o && o.name === table : "table" in o && o.table === table);
    }
    return false;
  });
  return mine.some((item) => "table" in item) ? { nftables: mine } : null;
}

/**
 * Whether a table carries the dormant flag, from the text of `nft -t list ruleset` (null: no such
 * table). The flags line, when there is one, comes first in the table's block.
 */
export function tableDormant(text: string, family: string, table: string): boolean | null {
  const lines = text.split("\n");
  const start = lines.indexOf(`table ${family} ${table} {`);
  if (start < 0) return null;
  for (const line of lines.slice(start + 1)) {
    const m = /^\t(flags|comment) (.*)$/.exec(line);
    if (!m) return false;
    if (m[1] === "flags" && /\bdormant\b/.test(m[2] ?? "")) return true;
  }
  return false;
}

/**
 * A chain's content as nft lists it, hashed: its base-chain properties (type, hook, priority,
 * policy) and, per rule in order, nft's own normalized JSON of the rule's expression. Learned
 * from the kernel right after we write the chain (our nft text and nft's listing differ in
 * form, so it cannot be computed from ours); a later listing that differs means someone
 * changed the chain by hand, whatever the comments say.
 */
export interface ChainPrint {
  base: string;
  rules: string[];
}

const STATEFUL = new Set(["counter", "quota", "last"]);

/** A rule expression's JSON without the values that change by themselves (anonymous counters,
 *  quotas and `last` statements count packets); everything else is compared as listed. */
function exprHash(expr: unknown): string {
  const text = JSON.stringify(expr ?? null, (key, v: unknown) => (STATEFUL.has(key) && typeof v === "object" && v !== null ? {} : v));
  return createHash("sha256").update(text).digest("base64").slice(0, 22);
}

function chainBase(c: Record<string, unknown>): string {
  const { family: _f, table: _t, name: _n, handle: _h, ...rest } = c;
  return JSON.stringify(rest);
}

/** An object's fields, or an error naming what was expected (listings are nft's, not ours). */
function fields(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`nft listing: ${what} is not an object`);
  return v as Record<string, unknown>;
}

function text(o: Record<string, unknown>, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== "string") throw new Error(`nft listing: ${what} without ${key}`);
  return v;
}

/** The jump target of a rule expression ({"jump": {"target": T}}), if it is one. */
function jumpTarget(e: unknown): string | undefined {
  if (typeof e !== "object" || e === null || !("jump" in e)) return undefined;
  const j = e.jump;
  return typeof j === "object" && j !== null && "target" in j && typeof j.target === "string" ? j.target : undefined;
}

// Read every few seconds: plain checks rather than a schema, which copied every object.
export function parseTable(json: NftJson): TableListing {
  const out: TableListing = { chains: new Set(), sets: new Set(), counters: new Set(), rules: new Map(), prints: new Map(), jumps: [], flagged: false };
  const print = (chain: string): ChainPrint => {
    let p = out.prints.get(chain);
    if (!p) out.prints.set(chain, (p = { base: "", rules: [] }));
    return p;
  };
  for (const item of json.nftables) {
    if ("table" in item) out.flagged = "flags" in fields(item["table"], "table");
    else if ("chain" in item) {
      const c = fields(item["chain"], "chain");
      const name = text(c, "name", "chain");
      out.chains.add(name);
      print(name).base = chainBase(c);
    }
    else if ("set" in item) out.sets.add(text(fields(item["set"], "set"), "name", "set"));
    else if ("counter" in item) out.counters.add(text(fields(item["counter"], "counter"), "name", "counter"));
    else if ("rule" in item) {
      const r = fields(item["rule"], "rule");
      const chain = text(r, "chain", "rule");
      const comment = typeof r["comment"] === "string" ? r["comment"] : "";
      const list = out.rules.get(chain) ?? [];
      list.push(comment);
      out.rules.set(chain, list);
      const expr = r["expr"];
      print(chain).rules.push(exprHash(expr));
      if (chain === "output" && Array.isArray(expr)) {
        for (const e of expr) {
          const target = jumpTarget(e);
          if (target !== undefined) out.jumps.push({ target, comment });
        }
      }
    }
  }
  return out;
}

/** Whether a chain's rules carry the comments we gave them, in order. */
export function sameComments(applied: Ruleset["chains"][number], kernel: TableListing): boolean {
  const have = kernel.rules.get(applied.name) ?? [];
  return applied.rules.length === have.length && applied.rules.every((r, i) => r.comment === have[i]);
}

/**
 * Differences between what the kernel holds and what we applied (empty: no drift): objects
 * missing, rule comments, and, for the chains whose print we learned (`known`), the content of
 * every rule and the base-chain properties.
 */
export function drift(applied: Ruleset, kernel: TableListing, known: ReadonlyMap<string, ChainPrint> = new Map()): string[] {
  const out: string[] = [];
  for (const c of applied.chains) {
    if (!kernel.chains.has(c.name)) {
      out.push(`chain ${c.name} missing`);
      continue;
    }
    if (!sameComments(c, kernel)) {
      out.push(`chain ${c.name} rules differ`);
      continue;
    }
    const want = known.get(c.name);
    const have = kernel.prints.get(c.name);
    if (!want || !have) continue;
    if (want.base !== have.base) out.push(`chain ${c.name} properties changed`);
    const changed = want.rules.findIndex((h, i) => h !== have.rules[i]);
    if (changed >= 0) out.push(`chain ${c.name} rule ${changed + 1} (${c.rules[changed]?.comment ?? ""}) content changed`);
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
    const c = fields(item["counter"], "counter");
    const { packets, bytes } = c;
    if (typeof packets !== "number" || typeof bytes !== "number") throw new Error("nft listing: counter without packets and bytes");
    out.set(text(c, "name", "counter"), { packets, bytes });
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
      const concat = Concat.safeParse(val);
      const key = concat.success ? concat.data.concat : typeof val === "string" || typeof val === "number" ? [val] : [];
      out.push({ key, packets: e.data.elem.counter?.packets ?? 0, bytes: e.data.elem.counter?.bytes ?? 0 });
    }
  }
  return out;
}
