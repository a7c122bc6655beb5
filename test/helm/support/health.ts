// What GitOps tools make of an object's status:
// - kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, used by Flux's health checks and kpt): the
//   generic rules every custom resource gets, plus the CustomResourceDefinition rule;
// - our Argo CD health check (docs/argocd-health.lua), run by the real lua5.4 interpreter with
//   the object as the global `obj`, as Argo CD runs it.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ROOT } from "../../support/exec.js";

export type KStatus = "InProgress" | "Current" | "Failed" | "Terminating";

interface Condition {
  type?: unknown;
  status?: unknown;
  message?: unknown;
}

function record(v: unknown): Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function conditions(obj: unknown): Condition[] {
  const c = record(record(obj)["status"])["conditions"];
  return Array.isArray(c) ? c.map((x) => record(x)) : [];
}

/**
 * kstatus' verdict, ported from cli-utils' status.Compute for custom resources and CRDs:
 * deletionTimestamp -> Terminating; observedGeneration present and != generation ->
 * InProgress; then the first of Reconciling=True (InProgress) or Stalled=True (Failed) in the
 * order the conditions are listed; CRDs: Established=True or InProgress; otherwise Current.
 */
export function kstatus(obj: unknown): { status: KStatus; message: string } {
  const o = record(obj);
  const meta = record(o["metadata"]);
  if (typeof meta["deletionTimestamp"] === "string" && meta["deletionTimestamp"] !== "") return { status: "Terminating", message: "Resource scheduled for deletion" };
  const generation = meta["generation"];
  const observed = record(o["status"])["observedGeneration"];
  if (typeof generation === "number" && typeof observed === "number" && observed !== generation) {
    return { status: "InProgress", message: `generation is ${generation}, but latest observed generation is ${observed}` };
  }
  for (const c of conditions(obj)) {
    if (c.type === "Reconciling" && c.status === "True") return { status: "InProgress", message: String(c.message ?? "") };
    if (c.type === "Stalled" && c.status === "True") return { status: "Failed", message: String(c.message ?? "") };
  }
  if (o["kind"] === "CustomResourceDefinition" && String(o["apiVersion"]).startsWith("apiextensions.k8s.io/")) {
    const established = conditions(obj).some((c) => c.type === "Established" && c.status === "True");
    return established ? { status: "Current", message: "CRD is established" } : { status: "InProgress", message: "Install in progress" };
  }
  return { status: "Current", message: "Resource is current" };
}

export const LUA_HEALTH = join(ROOT, "docs", "argocd-health.lua");

/** A Lua string literal: bytes kept, quotes, backslashes and control characters escaped. */
function luaString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\${String(code).padStart(3, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

/**
 * A Lua table constructor for JSON-like data. Numbers become floats (1 -> 1.0), as in Argo
 * CD's gopher-lua, where every JSON number is a float64: a script that concatenates a number
 * into a message shows "1.0" here instead of failing silently only in production.
 */
export function luaValue(v: unknown): string {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "boolean") return String(v);
  if (typeof v === "number") return Number.isInteger(v) ? `${v}.0` : String(v);
  if (typeof v === "string") return luaString(v);
  if (Array.isArray(v)) return `{${v.map(luaValue).join(", ")}}`;
  if (typeof v === "object") {
    return `{${Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined && x !== null)
      .map(([k, x]) => `[${luaString(k)}] = ${luaValue(x)}`)
      .join(", ")}}`;
  }
  throw new Error(`cannot express ${typeof v} in Lua`);
}

export interface ArgoHealth {
  status: string;
  message: string;
}

/** Runs docs/argocd-health.lua on obj with lua5.4; throws when the script fails. */
export function argoHealth(obj: unknown, script = LUA_HEALTH): ArgoHealth {
  const program = [
    `obj = ${luaValue(obj)}`,
    `local hs = dofile(${luaString(script)})`,
    `assert(type(hs) == "table", "the health script returned no table")`,
    `io.write(tostring(hs.status), "\\n", tostring(hs.message))`,
  ].join("\n");
  const r = spawnSync("lua5.4", ["-"], { input: program, encoding: "utf8" });
  if (r.error) throw new Error(`lua5.4: ${r.error.message} (hack/deps.sh installs Debian's lua5.4)`);
  if (r.status !== 0) throw new Error(`lua5.4 failed (${r.status}): ${r.stderr.trim()}`);
  const i = r.stdout.indexOf("\n");
  return { status: r.stdout.slice(0, i), message: r.stdout.slice(i + 1) };
}
