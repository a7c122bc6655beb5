// The compiler (pure): the policies that select a node, plus what the node resolved (users,
// groups, cgroups, FQDNs, address sets), become the desired state of table inet nftegress.
// (A DestinationCompiler passed in remembers earlier results; it changes speed, not output.)
//
// Layout (README "What it guarantees" states the contract):
//   output (hook output, policy accept): jump guard; jump <policy> in priority order; then
//     goto <first Enforce policy with defaultAction Deny>_deny, or else goto accepted.
//   guard: established packets to the established chain (replies on connections others opened,
//     and flows accepted under the current rules), related packets (ICMP errors), loopback,
//     ICMPv6 ND/MLD, DHCP client, API servers, failsafe.
//   accepted: records the flow as accepted under the current rules, then accepts. Every
//     changing transaction makes the record stale (plan.ts withRecheck), so an established
//     flow passes the new rules once more at its next packet: revocation without listing
//     conntrack. The record is the set @flows or, with a revocation mark, the epoch in the
//     conntrack mark's reserved bits (src/nft/recheck.ts holds both layouts).
//   <policy>: the rules in order. Enforce: Allow -> goto accepted, Deny -> goto <policy>_deny.
//     Audit never changes a verdict: Allow -> return, Deny -> goto <policy>_deny (which counts
//     and logs, then returns to the output chain), and its own defaultAction Deny is counted
//     at the end of its chain.
//   <policy>_deny: named counter; dynamic per-destination and per-uid sets (each its own rule,
//     so a full set never skips the verdict); rate-limited log; drop or reject (Enforce only).
// Destinations live in hash sets, one per stride length (every 4 bits): a rule does one
// masked lookup per stride in use, and changing one CIDR changes a handful of elements.
import type { EgressPolicy, Port, Rule } from "../api/policy.js";
import type { EgressAddressSet } from "../api/addressset.js";
import { setName } from "../api/addressset.js";
import type { Family } from "../net/cidr.js";
import { aggregate, bits, formatAddress, formatCidr, formatMask, parseCidr } from "../net/cidr.js";
import { DestinationCompiler } from "./destinations.js";
import { ruleSpec, type ChainSpec, type RuleSpec, type Ruleset, type SetSpec } from "../nft/ruleset.js";
import type { Guard } from "./guard.js";
import { ACCEPT_CHAIN, ESTABLISHED_CHAIN, FLOWS_SET, GUARD_CHAIN, OUTPUT_CHAIN, names, policyId, ruleSetName, shortHash, type PolicyMode } from "./names.js";
import { selects } from "./selector.js";
import { recheckObjects } from "../nft/recheck.js";

export interface Node {
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface Identities {
  users: ReadonlyMap<string, number>;
  groups: ReadonlyMap<string, number>;
}

export interface CompileInput {
  policies: readonly EgressPolicy[];
  node: Node;
  addressSets: readonly EgressAddressSet[];
  identities: Identities;
  /** Addresses each FQDN resolved to (missing: not resolved yet, matches nothing). */
  fqdns: ReadonlyMap<string, readonly string[]>;
  /** cgroup v2 paths that exist on the node now -> the path nft resolves (see host/cgroups). */
  cgroups: ReadonlyMap<string, string>;
  guard: Guard;
  /** Re-check established flows with these conntrack mark bits instead of the flows set. */
  revocationMark?: number;
  /** Remembers earlier results to compile only what changed (the output is the same without). */
  destinations?: DestinationCompiler;
}

export interface CompileIssue {
  policy: string;
  path: (string | number)[];
  message: string;
}

export interface CompiledPolicy {
  name: string;
  id: string;
  generation: number;
  /** Hash of the spec: identifies what was applied when generations are not kept (files). */
  revision: string;
  mode: "Audit" | "Enforce";
  priority: number;
  /** Human notes: rules that match nothing on this node, and why. */
  notes: string[];
}

export interface CompileResult {
  ruleset: Ruleset;
  policies: CompiledPolicy[];
  /** Policies refused by validation on this node; they are not in the ruleset. */
  errors: CompileIssue[];
}

const TABLE_COMMENT = "managed by nftegress: changes here are reverted";
const DYN_TIMEOUT = "1h";
const DYN_SIZE = 4096;
const UID_SIZE = 1024;
const PORT_PROTOCOLS = ["TCP", "UDP", "SCTP"] as const;

const rule = ruleSpec;

function join(...parts: string[]): string {
  return parts.filter((p) => p !== "").join(" ");
}

function nftSet(values: readonly string[]): string {
  return values.length === 1 ? (values[0] ?? "") : `{ ${values.join(", ")} }`;
}

function portValues(ports: readonly Port[]): string[] {
  const vals = ports.map((p) => (p.endPort !== undefined && p.endPort !== p.port ? `${p.port}-${p.endPort}` : `${p.port}`));
  return [...new Set(vals)];
}

function sortedPolicies(policies: readonly EgressPolicy[]): EgressPolicy[] {
  return [...policies].sort((a, b) => a.spec.priority - b.spec.priority || (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0));
}

// ---- guard ---------------------------------------------------------------------------------

function familyOf(addr: string): Family | null {
  const r = parseCidr(addr);
  return r.ok ? r.cidr.family : null;
}

function daddrMatch(family: Family): string {
  return family === 4 ? "ip daddr" : "ip6 daddr";
}

/** The prefixes of one family among the texts, aggregated, as nft set elements (hosts bare). */
function prefixElements(texts: readonly string[], family: Family): string[] {
  const cidrs = texts.flatMap((t) => {
    const r = parseCidr(t);
    return r.ok && r.cidr.family === family ? [r.cidr] : [];
  });
  return aggregate(cidrs).map((c) => (c.len === bits(family) ? formatAddress(family, c.addr) : formatCidr(c)));
}

function guardChain(guard: Guard): { chain: ChainSpec; sets: SetSpec[] } {
  const nodes = splitNodes(guard.nodes ?? []);
  // What the guard opens for new flows goes through the accepted chain like a policy's Allow,
  // so their established packets stop at the first rule instead of walking the guard again.
  const rules: RuleSpec[] = [
    // One lookup for every packet: established ones go on to the flow check, related ones
    // (ICMP errors) pass, new ones go on at once.
    rule(`ct state vmap { established : jump ${ESTABLISHED_CHAIN}, related : accept }`, "guard:established"),
    rule('oifname "lo" accept', "guard:loopback"),
    rule(
      "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect, mld-listener-query, mld-listener-report, mld-listener-done, mld2-listener-report } accept",
      "guard:ipv6-nd-mld",
    ),
    rule(`udp sport 68 udp dport 67 goto ${ACCEPT_CHAIN}`, "guard:dhcpv4"),
    rule(`udp sport 546 udp dport 547 goto ${ACCEPT_CHAIN}`, "guard:dhcpv6"),
  ];
  for (const family of [4, 6] as const) {
    const eps = guard.apiServers
      .filter((e) => familyOf(e.address) === family)
      .map((e) => {
        const c = parseCidr(e.address);
        return c.ok ? `${formatAddress(family, c.cidr.addr)} . ${Math.trunc(e.port)}` : "";
      })
      .filter((s) => s !== "");
    const uniq = [...new Set(eps)].sort();
    if (uniq.length) rules.push(rule(`${daddrMatch(family)} . tcp dport { ${uniq.join(", ")} } goto ${ACCEPT_CHAIN}`, "guard:api-server"));
  }
  for (const family of [4, 6] as const) {
    const list = prefixElements(guard.localPods ?? [], family);
    if (list.length) rules.push(rule(`${daddrMatch(family)} ${nftSet(list)} goto ${ACCEPT_CHAIN}`, "guard:local-pods"));
  }
  // Every failsafe entry names where it goes: an entry without destinations opens nothing.
  // The node addresses (`to: nodes`) live in two named hash sets shared by all such entries,
  // so a Node joining or leaving changes one element, not the guard chain.
  for (const f of guard.failsafe) {
    const proto = f.protocol === "TCP" ? "tcp" : "udp";
    const ports = `${proto} dport ${nftSet(f.ports.map(String))}`;
    for (const family of [4, 6] as const) {
      if (f.to === "nodes" && nodes[family].hosts.length) rules.push(rule(`${daddrMatch(family)} @${GUARD_NODES[family]} ${ports} goto ${ACCEPT_CHAIN}`, `guard:failsafe:${f.name}:nodes`));
      const list = prefixElements([...(f.cidrs ?? []), ...(f.to === "nodes" ? nodes[family].prefixes : [])], family);
      if (list.length) rules.push(rule(`${daddrMatch(family)} ${nftSet(list)} ${ports} goto ${ACCEPT_CHAIN}`, `guard:failsafe:${f.name}`));
    }
  }
  const sets: SetSpec[] = [];
  if (guard.failsafe.some((f) => f.to === "nodes")) {
    for (const family of [4, 6] as const) {
      const hosts = nodes[family].hosts;
      if (hosts.length) sets.push({ name: GUARD_NODES[family], keyType: family === 4 ? "ipv4_addr" : "ipv6_addr", dynamic: false, elements: hosts });
    }
  }
  return { chain: { name: GUARD_CHAIN, rules }, sets };
}

/** The named sets of the cluster's node addresses (hosts only; prefixes stay in the rule). */
export const GUARD_NODES = { 4: "guard_nodes4", 6: "guard_nodes6" } as const;

/** Node addresses by family: single hosts (for the named set) and wider prefixes. */
function splitNodes(texts: readonly string[]): Record<Family, { hosts: string[]; prefixes: string[] }> {
  const hosts: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
  const prefixes: Record<Family, string[]> = { 4: [], 6: [] };
  for (const t of texts) {
    const r = parseCidr(t);
    if (!r.ok) continue;
    const c = r.cidr;
    // Not aggregated: neighbouring node addresses stay single elements of the hash set.
    if (c.len === bits(c.family)) hosts[c.family].add(formatAddress(c.family, c.addr));
    else prefixes[c.family].push(formatCidr(c));
  }
  return { 4: { hosts: [...hosts[4]].sort(), prefixes: prefixes[4] }, 6: { hosts: [...hosts[6]].sort(), prefixes: prefixes[6] } };
}

// ---- rules ---------------------------------------------------------------------------------

interface Alt {
  frag: string;
  orig: string;
  family?: Family;
}

const ANY: Alt = { frag: "", orig: "" };

function protoAlts(ports: readonly Port[] | undefined): Alt[] {
  if (!ports || ports.length === 0) return [ANY];
  const alts: Alt[] = [];
  for (const proto of PORT_PROTOCOLS) {
    const mine = ports.filter((p) => p.protocol === proto);
    if (!mine.length) continue;
    const kw = proto.toLowerCase();
    if (mine.some((p) => p.port === undefined)) {
      alts.push({ frag: `meta l4proto ${kw}`, orig: `meta l4proto ${kw}` });
    } else {
      const vals = nftSet(portValues(mine));
      alts.push({ frag: `${kw} dport ${vals}`, orig: `meta l4proto ${kw} ct original proto-dst ${vals}` });
    }
  }
  if (ports.some((p) => p.protocol === "ICMP")) alts.push({ frag: "meta l4proto icmp", orig: "meta l4proto icmp", family: 4 });
  if (ports.some((p) => p.protocol === "ICMPv6")) alts.push({ frag: "meta l4proto ipv6-icmp", orig: "meta l4proto ipv6-icmp", family: 6 });
  return alts;
}

interface DestResult {
  alts: Alt[];
  sets: SetSpec[];
  unresolved: string[];
}

function destinations(policy: string, r: Rule, input: CompileInput, compiler: DestinationCompiler, issues: CompileIssue[], ruleIdx: number): DestResult | null {
  if (!r.to) return { alts: [ANY], sets: [], unresolved: [] };
  const sources: (readonly string[])[] = [];
  const unresolved: string[] = [];
  const addFqdns = (names: readonly string[]) => {
    for (const f of names) {
      const addrs = input.fqdns.get(f);
      if (addrs && addrs.length) sources.push(addrs);
      else unresolved.push(f);
    }
  };
  sources.push(r.to.cidrs ?? []);
  addFqdns(r.to.fqdns ?? []);
  (r.to.addressSets ?? []).forEach((name, i) => {
    const chunks = input.addressSets.filter((s) => setName(s) === name);
    if (!chunks.length) {
      issues.push({ policy, path: ["spec", "rules", ruleIdx, "to", "addressSets", i], message: `unknown EgressAddressSet "${name}"` });
      return;
    }
    for (const c of chunks) {
      sources.push(c.spec.cidrs);
      addFqdns(c.spec.fqdns);
    }
  });
  const compiled = compiler.compile(`${policy}/${r.name}`, sources);
  const alts: Alt[] = [];
  const sets: SetSpec[] = [];
  for (const { family, stride, elements } of compiled.strides) {
    if (stride === 0) {
      const fam = `meta nfproto ${family === 4 ? "ipv4" : "ipv6"}`;
      alts.push({ frag: fam, orig: fam, family });
      continue;
    }
    const name = ruleSetName(policy, r.name, family, stride);
    sets.push({ name, keyType: family === 4 ? "ipv4_addr" : "ipv6_addr", dynamic: false, elements });
    const mask = stride === bits(family) ? "" : ` & ${formatMask(family, stride)}`;
    alts.push({ frag: `${daddrMatch(family)}${mask} @${name}`, orig: `ct original ${daddrMatch(family)}${mask} @${name}`, family });
  }
  return { alts, sets, unresolved };
}

function identityAlts(policy: string, r: Rule, ruleIdx: number, input: CompileInput, issues: CompileIssue[]): { alts: string[]; note?: string } | null {
  const resolve = (list: readonly string[], table: ReadonlyMap<string, number>, field: "users" | "groups"): string | null => {
    const ids: number[] = [];
    let ok = true;
    list.forEach((name, i) => {
      if (/^[0-9]+$/.test(name)) {
        ids.push(Number(name));
        return;
      }
      const id = table.get(name);
      if (id === undefined) {
        ok = false;
        const kind = field === "users" ? "user" : "group";
        issues.push({ policy, path: ["spec", "rules", ruleIdx, field, i], message: `unknown ${kind} "${name}" on this node` });
      } else ids.push(id);
    });
    if (!ok) return null;
    const key = field === "users" ? "meta skuid" : "meta skgid";
    return `${key} ${nftSet([...new Set(ids)].sort((a, b) => a - b).map(String))}`;
  };
  const parts: string[] = [];
  if (r.users?.length) {
    const u = resolve(r.users, input.identities.users, "users");
    if (u === null) return null;
    parts.push(u);
  }
  if (r.groups?.length) {
    const g = resolve(r.groups, input.identities.groups, "groups");
    if (g === null) return null;
    parts.push(g);
  }
  const base = parts.join(" ");
  if (!r.cgroups?.length) return { alts: [base] };
  const present = r.cgroups.map((c) => c.replace(/^\/+/, "")).filter((c) => input.cgroups.has(c));
  if (!present.length) return { alts: [], note: `rule ${r.name}: none of its cgroups exist on this node` };
  return { alts: present.map((c) => join(base, `socket cgroupv2 level ${c.split("/").length} "${input.cgroups.get(c) ?? c}"`)) };
}

// ---- policies ------------------------------------------------------------------------------

function denyChain(p: EgressPolicy, pid: string): ChainSpec {
  const audit = p.spec.mode === "Audit";
  const counter = audit ? names.wouldCounter(pid) : names.deniedCounter(pid);
  const label = `${p.metadata.name}:${audit ? "would-deny" : "deny"}`;
  const rules: RuleSpec[] = [rule(`counter name "${counter}"`, label)];
  for (const family of [4, 6] as const) {
    const d = family === 4 ? "ip daddr" : "ip6 daddr";
    rules.push(rule(`meta l4proto { tcp, udp, sctp } update @${names.dst(pid, family, true, p.spec.mode)} { ${d} . meta l4proto . th dport }`, label));
    rules.push(rule(`meta l4proto != { tcp, udp, sctp } update @${names.dst(pid, family, false, p.spec.mode)} { ${d} . meta l4proto }`, label));
  }
  rules.push(rule(`update @${names.uid(pid, p.spec.mode)} { meta skuid }`, label));
  const log = p.spec.logging;
  if (log.enabled) {
    const prefix = `${log.prefix} ${audit ? "AUDIT " : ""}${p.metadata.name}`.slice(0, 120) + " ";
    const target = log.group !== undefined ? `log prefix "${prefix}" group ${log.group}` : `log prefix "${prefix}" level warn`;
    rules.push(rule(`limit rate ${log.rate} ${target}`, label));
  }
  // Reject: TCP gets a reset, since a local connect() may ignore an ICMP error that arrives
  // while it still holds the socket and only fail at the SYN's retransmit (about 1 s, measured
  // on the real node); everything else gets icmpx admin-prohibited.
  if (!audit && p.spec.denyResponse === "Reject") rules.push(rule("meta l4proto tcp reject with tcp reset", label));
  if (!audit) rules.push(rule(p.spec.denyResponse === "Reject" ? "reject with icmpx admin-prohibited" : "drop", label));
  return { name: names.denyChain(pid), rules };
}

function dynamicSets(pid: string, mode: PolicyMode): SetSpec[] {
  const dyn = (name: string, keyType: string, size: number): SetSpec => ({
    name,
    keyType,
    dynamic: true,
    flags: ["dynamic", "timeout"],
    timeout: DYN_TIMEOUT,
    size,
    counter: true,
    elements: [],
  });
  return [
    dyn(names.dst(pid, 4, true, mode), "ipv4_addr . inet_proto . inet_service", DYN_SIZE),
    dyn(names.dst(pid, 4, false, mode), "ipv4_addr . inet_proto", DYN_SIZE),
    dyn(names.dst(pid, 6, true, mode), "ipv6_addr . inet_proto . inet_service", DYN_SIZE),
    dyn(names.dst(pid, 6, false, mode), "ipv6_addr . inet_proto", DYN_SIZE),
    dyn(names.uid(pid, mode), "uid", UID_SIZE),
  ];
}

interface PolicyOutput {
  compiled: CompiledPolicy;
  chains: ChainSpec[];
  sets: SetSpec[];
  counters: string[];
}

function compilePolicy(p: EgressPolicy, input: CompileInput, compiler: DestinationCompiler, issues: CompileIssue[]): PolicyOutput | null {
  const name = p.metadata.name;
  const pid = policyId(name);
  const audit = p.spec.mode === "Audit";
  const deny = names.denyChain(pid);
  const before = issues.length;
  const rules: RuleSpec[] = [];
  const sets: SetSpec[] = [];
  const notes: string[] = [];
  p.spec.rules.forEach((r, idx) => {
    const dest = destinations(name, r, input, compiler, issues, idx);
    const ident = identityAlts(name, r, idx, input, issues);
    if (!dest || !ident) return;
    if (ident.note) notes.push(ident.note);
    if (dest.unresolved.length) notes.push(`rule ${r.name}: not yet resolved: ${dest.unresolved.join(", ")}`);
    if (!dest.alts.length) {
      notes.push(`rule ${r.name}: no destination resolved, so it matches nothing`);
      return;
    }
    if (!ident.alts.length) return;
    sets.push(...dest.sets);
    const verdict = r.action === "Allow" ? (audit ? "return" : `goto ${ACCEPT_CHAIN}`) : `goto ${deny}`;
    const label = `${name}/${r.name}`;
    for (const id of ident.alts) {
      for (const proto of protoAlts(r.ports)) {
        for (const d of dest.alts) {
          if (proto.family && d.family && proto.family !== d.family) continue;
          rules.push(rule(join(id, proto.frag, d.frag, verdict), label));
          // The same rule on the pre-NAT destination, when it depends on the destination.
          if (proto.orig !== proto.frag || d.orig !== d.frag) {
            rules.push(rule(join("ct status dnat", id, proto.orig, d.orig, verdict), `${label}:orig`));
          }
        }
      }
    }
  });
  if (issues.length > before) return null;
  if (audit && p.spec.defaultAction === "Deny") rules.push(rule(`goto ${deny}`, `${name}:default-deny`));
  return {
    compiled: { name, id: pid, generation: p.metadata.generation ?? 1, revision: shortHash(JSON.stringify(p.spec), 8), mode: p.spec.mode, priority: p.spec.priority, notes },
    chains: [{ name: pid, rules }, denyChain(p, pid)],
    sets: [...sets, ...dynamicSets(pid, p.spec.mode)],
    counters: [names.deniedCounter(pid), names.wouldCounter(pid)],
  };
}

/** Comment of a policy's jump rule: how `status` learns what is applied. Only bounded fields
 *  (at most about 80 characters, so never cut): the policy is the jump's target (its id), and
 *  its name is kept by id outside the table (Ruleset.policyNames, src/host/policynames.ts). */
export function policyComment(c: CompiledPolicy): string {
  return `policy gen:${c.generation} rev:${c.revision} mode:${c.mode} prio:${c.priority}`;
}

export function compile(input: CompileInput): CompileResult {
  const errors: CompileIssue[] = [];
  const selected = sortedPolicies(input.policies.filter((p) => selects(p.spec.nodeSelector, input.node.labels)));
  const outputs: PolicyOutput[] = [];
  const compiler = input.destinations ?? new DestinationCompiler();
  for (const p of selected) {
    const out = compilePolicy(p, input, compiler, errors);
    if (out) outputs.push(out);
  }
  compiler.sweep();
  const outputRules: RuleSpec[] = [rule(`jump ${GUARD_CHAIN}`, "guard")];
  for (const o of outputs) outputRules.push(rule(`jump ${o.compiled.id}`, policyComment(o.compiled)));
  const defaultDeny = outputs.find((o) => o.compiled.mode === "Enforce" && selected.find((p) => p.metadata.name === o.compiled.name)?.spec.defaultAction === "Deny");
  if (defaultDeny) outputRules.push(rule(`goto ${names.denyChain(defaultDeny.compiled.id)}`, `default-deny:${defaultDeny.compiled.name}`));
  else outputRules.push(rule(`goto ${ACCEPT_CHAIN}`, "default-accept"));
  const guard = guardChain(input.guard);
  // Compiled at epoch 1; the planner moves every changing transaction to the next (plan.ts).
  const mark = input.revocationMark !== undefined ? { mask: input.revocationMark, epoch: 1 } : undefined;
  const recheck = recheckObjects(mark);
  const chains: ChainSpec[] = [
    { name: OUTPUT_CHAIN, base: { type: "filter", hook: "output", priority: "filter", policy: "accept" }, rules: outputRules },
    guard.chain,
    ...recheck.chains,
    ...outputs.flatMap((o) => o.chains),
  ];
  return {
    ruleset: {
      comment: TABLE_COMMENT,
      chains,
      sets: [...recheck.sets, ...guard.sets, ...outputs.flatMap((o) => o.sets)],
      counters: outputs.flatMap((o) => o.counters),
      ...(mark ? { recheckMark: mark } : { acceptedFlows: FLOWS_SET }),
      policyNames: Object.fromEntries(outputs.map((o) => [o.compiled.id, o.compiled.name])),
    },
    policies: outputs.map((o) => o.compiled),
    errors,
  };
}
