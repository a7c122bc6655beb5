// Gathers what the compiler needs from the node itself: users and groups, resolvers for the
// DNS failsafe, which cgroups exist. The compiler stays pure; this module reads files.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import type { EgressPolicy } from "../api/policy.js";
import { existingCgroups } from "../host/cgroups.js";
import { readIdentities } from "../host/identities.js";
import { readResolvers } from "../host/resolvers.js";
import { Failsafe, defaultFailsafe, type Endpoint, type FailsafeEntry, type Guard } from "../policy/guard.js";
import type { Identities } from "../policy/compile.js";
import { InputError, issueLine } from "../source/documents.js";

export interface HostOptions {
  passwd: string;
  group: string;
  resolvConf: string;
  failsafeFile?: string | undefined;
}

export interface HostInputs {
  identities: Identities;
  guard: Guard;
}

export function loadFailsafe(file: string): FailsafeEntry[] {
  let doc: unknown;
  try {
    doc = yaml.load(readFileSync(file, "utf8"), { schema: yaml.CORE_SCHEMA });
  } catch (e) {
    throw new InputError(`${file}: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
  }
  const r = Failsafe.safeParse(doc ?? []);
  if (!r.success) throw new InputError(issueLine(`${file}: failsafe list`, r.error));
  return r.data;
}

export function readHost(opts: HostOptions, apiServers: Endpoint[] = [], localPods: string[] = []): HostInputs {
  const failsafe = opts.failsafeFile ? loadFailsafe(opts.failsafeFile) : defaultFailsafe(readResolvers(opts.resolvConf));
  return { identities: readIdentities(opts.passwd, opts.group), guard: { apiServers, failsafe, localPods } };
}

export function cgroupPaths(policies: readonly EgressPolicy[]): Map<string, string> {
  const named = policies.flatMap((p) => p.spec.rules.flatMap((r) => r.cgroups ?? []));
  // Checked every second by the standalone agent: no mount table read when no rule names one.
  return named.length ? existingCgroups(named) : new Map();
}

export function fqdnNames(policies: readonly EgressPolicy[], sets: readonly { spec: { fqdns: string[] } }[]): string[] {
  const out = new Set<string>();
  for (const p of policies) for (const r of p.spec.rules) for (const f of r.to?.fqdns ?? []) out.add(f);
  for (const s of sets) for (const f of s.spec.fqdns) out.add(f);
  return [...out].sort();
}
