// Shared by render/check/apply/agent: files -> validated documents -> compiled ruleset,
// with compile issues reported as one line naming the file, the object and the field.
import { hostname } from "node:os";
import { readHost, cgroupPaths, type HostOptions } from "./inputs.js";
import { compile, type CompileInput, type CompileIssue, type CompileResult } from "../policy/compile.js";
import type { DestinationCompiler } from "../policy/destinations.js";
import type { Endpoint, Guard } from "../policy/guard.js";
import { InputError, type Documents, type Origin } from "../source/documents.js";

export interface BuildOptions extends HostOptions {
  nodeName: string;
  nodeLabels: Record<string, string>;
  fqdns?: ReadonlyMap<string, readonly string[]>;
  /** Kept across builds by a long-running agent: only changed destinations are compiled. */
  destinations?: DestinationCompiler;
}

export function issueText(issue: CompileIssue, origins: ReadonlyMap<string, Origin>): string {
  const o = origins.get(`EgressPolicy/${issue.policy}`);
  const where = o ? `${o.file}: document ${o.index + 1}: ` : "";
  const path = issue.path.reduce<string>((s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${p}` : p), "");
  return `${where}EgressPolicy/${issue.policy}: ${path}: ${issue.message}`;
}

/** The compiled ruleset, the guard it holds (what it opens, for render and the report), and
 *  what it was compiled from (the evaluator of `explain` judges flows against the same). */
export type BuildResult = CompileResult & { guard: Guard; input: CompileInput };

export function build(docs: Documents, opts: BuildOptions, apiServers: Endpoint[] = [], localPods: string[] = []): BuildResult {
  const host = readHost(opts, apiServers, localPods);
  const input: CompileInput = {
    policies: docs.policies,
    node: { name: opts.nodeName, labels: opts.nodeLabels },
    addressSets: docs.addressSets,
    identities: host.identities,
    fqdns: opts.fqdns ?? new Map(),
    cgroups: cgroupPaths(docs.policies),
    guard: host.guard,
    ...(opts.revocationMark !== undefined ? { revocationMark: opts.revocationMark } : {}),
    ...(opts.destinations ? { destinations: opts.destinations } : {}),
  };
  return { ...compile(input), guard: host.guard, input };
}

/** Like build, but any policy refused on this node fails the whole command. */
export function buildStrict(docs: Documents, opts: BuildOptions): BuildResult {
  const result = build(docs, opts);
  const first = result.errors[0];
  if (first) {
    const more = result.errors.length > 1 ? ` (and ${result.errors.length - 1} more)` : "";
    throw new InputError(issueText(first, docs.origins) + more);
  }
  return result;
}

export function defaultNodeName(given: string | undefined): string {
  return given ?? hostname();
}
