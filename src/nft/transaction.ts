// The nftables transaction model (a list of verb + object, after knftables) and its rendering
// to `nft -f` text. Every identifier and string is checked here as a last line of defence:
// nft strings have no escapes, so text that is not safe never reaches nft.

import { formatAddress } from "../net/cidr.js";

export const FAMILY = "inet";
export const TABLE = "nftegress";

export interface BaseChain {
  type: "filter";
  hook: "output";
  priority: "filter";
  policy: "accept";
}

/**
 * Set elements: their texts, or IPv4 addresses as numbers (4 bytes each instead of a string
 * each: large destination sets stay small in memory), printed when rendered.
 */
export type Elements = readonly string[] | Uint32Array;

export type NftObject =
  | { type: "table"; comment?: string }
  | { type: "chain"; name: string; base?: BaseChain; comment?: string }
  | { type: "rule"; chain: string; expr: string; comment?: string }
  | {
      type: "set";
      name: string;
      /** Required for add; flush and delete name the set only. keyOf: keyType is an expression (`typeof`). */
      keyType?: string;
      keyOf?: boolean;
      flags?: string[];
      timeout?: string;
      size?: number;
      counter?: boolean;
      elements?: Elements;
    }
  | { type: "element"; set: string; elements: Elements }
  /** packets and bytes: the values a re-created counter starts from (an existing one keeps its own). */
  | { type: "counter"; name: string; packets?: number; bytes?: number };

export type Verb = "add" | "delete" | "flush";

export interface Op {
  verb: Verb;
  object: NftObject;
}

export type Transaction = Op[];

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const SAFE_STRING = /^[A-Za-z0-9 ._:/@-]{0,127}$/;
// Rule expressions are built from canonical values by the compiler; they never contain a
// string delimiter other than around safe strings, a statement separator or a newline.
const SAFE_EXPR = /^[A-Za-z0-9 _.:/,{}@&!=<>"-]+$/;
const SAFE_ELEMENT = /^[A-Za-z0-9.:/ -]+$/;

export class UnsafeTextError extends Error {
  constructor(what: string, value: string) {
    super(`refusing to render unsafe ${what}: ${JSON.stringify(value.slice(0, 80))}`);
    this.name = "UnsafeTextError";
  }
}

export function ident(name: string): string {
  if (!IDENT.test(name)) throw new UnsafeTextError("identifier", name);
  return name;
}

/** Quotes a string for nft after checking it holds only safe characters. */
export function quote(s: string): string {
  if (!SAFE_STRING.test(s)) throw new UnsafeTextError("string", s);
  return `"${s}"`;
}

function expr(e: string): string {
  if (!SAFE_EXPR.test(e)) throw new UnsafeTextError("rule expression", e);
  // Quotes may only surround safe strings.
  const parts = e.split('"');
  if (parts.length % 2 !== 1) throw new UnsafeTextError("rule expression", e);
  for (let i = 1; i < parts.length; i += 2) quote(parts[i] ?? "");
  return e;
}

function elements(list: Elements): string {
  if (list instanceof Uint32Array) return Array.from(list, (a) => formatAddress(4, a)).join(", ");
  for (const el of list) if (!SAFE_ELEMENT.test(el)) throw new UnsafeTextError("set element", el);
  return list.join(", ");
}

const ELEMENTS_PER_LINE = 1000;

function renderOp(op: Op): string[] {
  const o = op.object;
  const t = `${FAMILY} ${TABLE}`;
  switch (o.type) {
    case "table":
      return [`${op.verb} table ${t}${op.verb === "add" && o.comment ? ` { comment ${quote(o.comment)}; }` : ""}`];
    case "chain": {
      const head = `${op.verb} chain ${t} ${ident(o.name)}`;
      if (op.verb !== "add") return [head];
      const parts: string[] = [];
      if (o.base) parts.push(`type ${o.base.type} hook ${o.base.hook} priority ${o.base.priority}; policy ${o.base.policy};`);
      if (o.comment) parts.push(`comment ${quote(o.comment)};`);
      return [parts.length ? `${head} { ${parts.join(" ")} }` : head];
    }
    case "rule":
      return [`${op.verb} rule ${t} ${ident(o.chain)} ${expr(o.expr)}${o.comment ? ` comment ${quote(o.comment)}` : ""}`];
    case "set": {
      const head = `${op.verb} set ${t} ${ident(o.name)}`;
      if (op.verb !== "add") return [head];
      if (!o.keyType) throw new UnsafeTextError("set declaration without type", o.name);
      const parts = [`${o.keyOf ? "typeof" : "type"} ${expr(o.keyType)};`];
      if (o.flags?.length) parts.push(`flags ${o.flags.map(ident).join(",")};`);
      if (o.timeout) parts.push(`timeout ${expr(o.timeout)};`);
      if (o.size) parts.push(`size ${Math.trunc(o.size)};`);
      if (o.counter) parts.push("counter;");
      const lines = [`${head} { ${parts.join(" ")} }`];
      // Large element lists are split over several lines: one statement each, same transaction.
      if (o.elements?.length) lines.push(...renderElements("add", o.name, o.elements));
      return lines;
    }
    case "element":
      return renderElements(op.verb, o.set, o.elements);
    case "counter": {
      const values = op.verb === "add" && o.packets !== undefined && o.bytes !== undefined ? ` { packets ${Math.trunc(o.packets)} bytes ${Math.trunc(o.bytes)} }` : "";
      return [`${op.verb} counter ${t} ${ident(o.name)}${values}`];
    }
  }
}

function renderElements(verb: Verb, set: string, list: Elements): string[] {
  const lines: string[] = [];
  for (let i = 0; i < list.length; i += ELEMENTS_PER_LINE) {
    lines.push(`${verb} element ${FAMILY} ${TABLE} ${ident(set)} { ${elements(list.slice(i, i + ELEMENTS_PER_LINE))} }`);
  }
  return lines;
}

export function render(tx: Transaction): string {
  return tx.flatMap(renderOp).join("\n") + "\n";
}
