// Gathers what the compiler needs from the node itself: users and groups, resolvers for the
// DNS failsafe, time servers for the NTP failsafe, node addresses for the overlay entries,
// which cgroups exist. The compiler stays pure; this module reads files.
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import type { EgressPolicy } from "../api/policy.js";
import { existingCgroups } from "../host/cgroups.js";
import { readIdentities } from "../host/identities.js";
import { readResolvers } from "../host/resolvers.js";
import { TimeServerAddresses, readTimeConfig, timeServerNames } from "../host/timeservers.js";
import { isCidrText } from "../api/policy.js";
import { Failsafe, defaultFailsafe, type Endpoint, type FailsafeEntry, type Guard } from "../policy/guard.js";
import type { Identities } from "../policy/compile.js";
import { InputError, issueLine } from "../source/documents.js";

export interface HostOptions {
  passwd: string;
  group: string;
  resolvConf: string;
  failsafeFile?: string | undefined;
  /** Root under which the host's time configuration is read (default "/"; the chart: /host). */
  timeRoot?: string | undefined;
  /** --node-addresses: addresses or prefixes, or a file of them, added to the watched Nodes'. */
  nodeAddresses?: string | undefined;
  /** --revocation-mark: the conntrack mark bits that re-check flows (src/nft/recheck.ts). */
  revocationMark?: number | undefined;
  /** --bgp-peers: without any, the guard has no BGP entry. */
  bgpPeers?: readonly string[] | undefined;
  /** The cluster's node addresses (every Node's status.addresses), from the cluster agent. */
  clusterNodes?: readonly string[] | undefined;
  /** Kept by a long-running agent: pool addresses stay open a while after last resolved. */
  timeAddresses?: TimeServerAddresses | undefined;
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

/** A comma-separated list of addresses and prefixes, or null when an item is not one. */
export function cidrList(text: string): string[] | null {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  return items.every(isCidrText) ? items : null;
}

/**
 * --node-addresses: "10.0.0.5,10.0.1.0/24" as given, else a file with one address or prefix
 * per line (# comments), read at every build so an edit takes effect at the next apply.
 */
export function loadNodeAddresses(value: string | undefined): string[] {
  if (!value) return [];
  const list = cidrList(value);
  if (list) return list;
  let text: string;
  try {
    text = readFileSync(value, "utf8");
  } catch (e) {
    throw new InputError(`--node-addresses: ${value}: neither a list of addresses nor a readable file (${e instanceof Error ? e.message.split("\n")[0] : String(e)})`);
  }
  const out: string[] = [];
  text.split("\n").forEach((raw, i) => {
    for (const item of raw.replace(/#.*$/, "").split(/[\s,]+/).filter(Boolean)) {
      if (!isCidrText(item)) throw new InputError(`${value}: line ${i + 1}: "${String(item).slice(0, 60)}" is not an address or prefix`);
      out.push(item);
    }
  });
  return out;
}

/** Host names among the configured time servers: the agent resolves them with the policies' FQDNs. */
export function timeNames(opts: Pick<HostOptions, "timeRoot" | "failsafeFile">): string[] {
  return opts.failsafeFile ? [] : timeServerNames(readTimeConfig(opts.timeRoot ?? "/").servers);
}

export function readHost(opts: HostOptions & { fqdns?: ReadonlyMap<string, readonly string[]> | undefined }, apiServers: Endpoint[] = [], localPods: string[] = []): HostInputs {
  const nodes = [...new Set([...(opts.clusterNodes ?? []), ...loadNodeAddresses(opts.nodeAddresses)])];
  if (opts.failsafeFile) {
    return { identities: readIdentities(opts.passwd, opts.group), guard: { apiServers, failsafe: loadFailsafe(opts.failsafeFile), localPods, nodes } };
  }
  const time = readTimeConfig(opts.timeRoot ?? "/");
  const { addresses, unresolved } = (opts.timeAddresses ?? new TimeServerAddresses()).resolve(time.servers, opts.fqdns ?? new Map());
  const failsafe = defaultFailsafe({ resolvers: readResolvers(opts.resolvConf), timeServers: addresses, bgpPeers: opts.bgpPeers ?? [] });
  return { identities: readIdentities(opts.passwd, opts.group), guard: { apiServers, failsafe, localPods, nodes, ...(unresolved.length ? { unresolved } : {}) } };
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
