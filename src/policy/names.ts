// nft object names derived from hashes of validated names: stable across edits (so element
// diffs and counters survive), short, and never containing user text.
import { createHash } from "node:crypto";

export function shortHash(text: string, len = 10): string {
  return createHash("sha256").update(text).digest("hex").slice(0, len);
}

export const GUARD_CHAIN = "guard";
export const OUTPUT_CHAIN = "output";
/** Where every accept of a new or re-checked flow goes: records the flow, then accepts. */
export const ACCEPT_CHAIN = "accepted";
/** Where the guard sends established packets: replies, and flows recorded in the flows set. */
export const ESTABLISHED_CHAIN = "established";
/** The flows accepted under the current rules (conntrack ids); every change empties it. */
export const FLOWS_SET = "flows";

export function policyId(policy: string): string {
  return `p${shortHash(`policy/${policy}`)}`;
}

export function ruleSetName(policy: string, rule: string, family: 4 | 6, stride: number): string {
  return `r${shortHash(`rule/${policy}/${rule}`)}_${family}_${stride}`;
}

export type PolicyMode = "Audit" | "Enforce";

export const names = {
  denyChain: (pid: string) => `${pid}_deny`,
  deniedCounter: (pid: string) => `${pid}_denied`,
  wouldCounter: (pid: string) => `${pid}_would`,
  // The dynamic sets of the deny chain are named by the policy's mode, so a policy switched
  // between Audit and Enforce starts new, empty ones: would-denies never show as denials.
  dst: (pid: string, family: 4 | 6, ports: boolean, mode: PolicyMode) => `${pid}_${mode === "Audit" ? "a" : "d"}${family}${ports ? "" : "x"}`,
  uid: (pid: string, mode: PolicyMode) => `${pid}_${mode === "Audit" ? "a" : ""}uid`,
};
