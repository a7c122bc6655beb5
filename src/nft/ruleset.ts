// The desired state of our table, as the compiler produces it and the planner diffs it.
import type { BaseChain } from "./transaction.js";

export interface RuleSpec {
  expr: string;
  comment: string;
}

export interface ChainSpec {
  name: string;
  base?: BaseChain;
  rules: RuleSpec[];
}

export interface SetSpec {
  name: string;
  keyType: string;
  /** Dynamic sets (denied destinations/uids) are declared once and never flushed. */
  dynamic: boolean;
  flags?: string[];
  timeout?: string;
  size?: number;
  counter?: boolean;
  elements: string[];
}

export interface Ruleset {
  comment: string;
  chains: ChainSpec[];
  sets: SetSpec[];
  counters: string[];
}

export function elementCount(r: Ruleset): number {
  return r.sets.reduce((n, s) => n + s.elements.length, 0);
}
