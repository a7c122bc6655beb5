// The evaluator (pure): README's "Semantics" as code. Given what the compiler gets and one new
// flow, it says what the compiled ruleset decides and why: the guard entry that accepts it, or
// the policy and rule that decide it, every Audit policy that would deny it on the way, or the
// default and the policy a default denial is attributed to. It reads the inputs the way
// compile.ts does (selection, priority order with name ties by byte value, refused policies
// left out, empty lists meaning no condition, an empty `to` matching nothing) but shares none of
// its code, so the two can be checked against each other (test/unit/evaluate.test.ts, and on
// real packets test/nft/differential.test.ts).
import type { EgressPolicy, Port, Rule } from "../api/policy.js";
import { setName } from "../api/addressset.js";
import { contains, parseAddress, parseCidr, type Cidr, type Family } from "../net/cidr.js";
import type { CompileInput } from "./compile.js";
import { selects } from "./selector.js";

export const FLOW_PROTOCOLS = ["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"] as const;
export type FlowProtocol = (typeof FLOW_PROTOCOLS)[number];

/** One new flow the host sends (the first packet of a connection, or a datagram). */
export interface Flow {
  /** The sending socket's owner (meta skuid) and group (meta skgid: the effective gid). */
  uid: number;
  gid: number;
  /** The sending socket's cgroup v2 path below the v2 root; absent: the root cgroup. */
  cgroup?: string;
  /** Destination on the packet (after any DNAT in the output path). */
  to: string;
  protocol: FlowProtocol;
  /** Destination port (TCP, UDP, SCTP). */
  port?: number;
  /** Source port (only the guard's DHCP entries look at it); absent: an ephemeral port. */
  sourcePort?: number;
  /** Sent through the loopback interface (to 127.0.0.0/8, ::1, or the host's own addresses). */
  loopback?: boolean;
  /** The flow's destination before DNAT (a Service address), when it was translated. */
  original?: { to: string; port?: number };
}

export type DecidedBy =
  | { kind: "guard"; policy: null; rule: string; ruleIndex: null }
  | { kind: "rule"; policy: string; rule: string; ruleIndex: number }
  | { kind: "default"; policy: string | null; rule: null; ruleIndex: null };

export interface AuditHit {
  policy: string;
  /** The Deny rule that matched, or null: the Audit policy's own defaultAction Deny. */
  rule: string | null;
}

/** One step of the walk, in order. */
export type Step =
  | { step: "guard"; entry: string; action: "Allow" }
  | { step: "refused"; policy: string; message: string }
  | {
      step: "rule";
      policy: string;
      mode: "Audit" | "Enforce";
      rule: string;
      ruleIndex: number;
      action: "Allow" | "Deny";
      /** Matched on the original (pre-DNAT) destination only. */
      original: boolean;
      /** What the match does: decides the flow, or (Audit) returns to the next policy. */
      effect: "allow" | "deny" | "would-deny" | "next-policy";
    }
  | { step: "no-match"; policy: string; mode: "Audit" | "Enforce" }
  | { step: "audit-default"; policy: string; effect: "would-deny" }
  | { step: "default"; policy: string | null; action: "Allow" | "Deny" };

export interface Explanation {
  verdict: "Allow" | "Deny";
  /** How a denial is sent: Drop, or Reject (a TCP reset, else ICMP admin-prohibited). */
  denyResponse?: "Drop" | "Reject";
  decidedBy: DecidedBy;
  audit: AuditHit[];
  path: Step[];
}

// ---- addresses and ports --------------------------------------------------------------------

function hostCidr(addr: string): Cidr | null {
  const a = parseAddress(addr);
  if (!a) return null;
  return a.family === 4 ? { family: 4, addr: a.addr, len: 32 } : { family: 6, addr: a.addr, len: 128 };
}

/** Whether the address is inside any of the texts (addresses or prefixes; others ignored). */
function inAny(addr: Cidr, texts: readonly string[]): boolean {
  for (const t of texts) {
    const c = parseCidr(t);
    if (c.ok && contains(c.cidr, addr)) return true;
  }
  return false;
}

function familyOfProtocol(p: FlowProtocol): Family | null {
  return p === "ICMP" ? 4 : p === "ICMPv6" ? 6 : null;
}

function hasPorts(p: FlowProtocol): boolean {
  return p === "TCP" || p === "UDP" || p === "SCTP";
}

/** A guard port list: numbers and "a-b" ranges. */
function inPortList(port: number | undefined, list: readonly (number | string)[]): boolean {
  if (port === undefined) return false;
  return list.some((p) => {
    if (typeof p === "number") return p === port;
    const [lo, hi] = p.split("-").map(Number);
    return lo !== undefined && hi !== undefined && port >= lo && port <= hi;
  });
}

// ---- the guard ------------------------------------------------------------------------------

const LOOPBACK: readonly string[] = ["127.0.0.0/8", "::1"];

/** The guard entry that accepts the flow, in the guard chain's order, or null. */
export function guardMatch(input: Pick<CompileInput, "guard">, flow: Flow): string | null {
  const g = input.guard;
  const dst = hostCidr(flow.to);
  if (!dst) return null;
  // Established and related packets never start a flow; ICMPv6 ND/MLD messages are not flows
  // this evaluator takes (an ICMPv6 flow is an echo request or the like).
  if (flow.loopback ?? inAny(dst, LOOPBACK)) return "loopback";
  if (flow.protocol === "UDP" && flow.sourcePort === 68 && flow.port === 67) return "dhcpv4";
  if (flow.protocol === "UDP" && flow.sourcePort === 546 && flow.port === 547) return "dhcpv6";
  if (flow.protocol === "TCP" && g.apiServers.some((e) => Math.trunc(e.port) === flow.port && inAny(dst, [e.address]))) return "api-server";
  if (inAny(dst, g.localPods ?? [])) return "local-pods";
  for (const f of g.failsafe) {
    if (f.protocol !== flow.protocol || !inPortList(flow.port, f.ports)) continue;
    const to = [...(f.cidrs ?? []), ...(f.to === "nodes" ? (g.nodes ?? []) : [])];
    if (inAny(dst, to)) return f.name;
  }
  return null;
}

// ---- rules ----------------------------------------------------------------------------------

/** Why a policy is refused on this node (what compile reports), or null. */
export function refusal(p: EgressPolicy, input: Pick<CompileInput, "addressSets" | "identities">): string | null {
  for (const [i, r] of p.spec.rules.entries()) {
    for (const name of r.to?.addressSets ?? []) {
      if (!input.addressSets.some((s) => setName(s) === name)) return `spec.rules[${i}]: unknown EgressAddressSet "${name}"`;
    }
    for (const u of r.users ?? []) if (!/^[0-9]+$/.test(u) && !input.identities.users.has(u)) return `spec.rules[${i}]: unknown user "${u}" on this node`;
    for (const g of r.groups ?? []) if (!/^[0-9]+$/.test(g) && !input.identities.groups.has(g)) return `spec.rules[${i}]: unknown group "${g}" on this node`;
  }
  return null;
}

function principalMatch(list: readonly string[] | undefined, id: number, table: ReadonlyMap<string, number>): boolean {
  if (!list || list.length === 0) return true;
  return list.some((n) => (/^[0-9]+$/.test(n) ? Number(n) : table.get(n)) === id);
}

function cgroupMatch(list: readonly string[] | undefined, flowCgroup: string | undefined, present: ReadonlyMap<string, string>): boolean {
  if (!list || list.length === 0) return true;
  const mine = (flowCgroup ?? "").replace(/^\/+/, "").replace(/\/+$/, "");
  if (mine === "") return false;
  // `socket cgroupv2 level N PATH`: the socket's cgroup is PATH or below it; only paths that
  // exist on the node are in the ruleset at all.
  return list.some((c) => {
    const path = c.replace(/^\/+/, "");
    return present.has(path) && (mine === path || mine.startsWith(`${path}/`));
  });
}

/** The destination texts of a rule: its CIDRs, resolved FQDNs and address-set chunks. */
function destinationTexts(r: Rule, input: Pick<CompileInput, "addressSets" | "fqdns">): string[] | null {
  if (!r.to) return null;
  const out: string[] = [...(r.to.cidrs ?? [])];
  const fq = (names: readonly string[]) => {
    for (const f of names) out.push(...(input.fqdns.get(f) ?? []));
  };
  fq(r.to.fqdns ?? []);
  for (const name of r.to.addressSets ?? []) {
    for (const c of input.addressSets.filter((s) => setName(s) === name)) {
      out.push(...c.spec.cidrs);
      fq(c.spec.fqdns);
    }
  }
  return out;
}

function portMatch(ports: readonly Port[] | undefined, protocol: FlowProtocol, port: number | undefined): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some((p) => {
    if (p.protocol !== protocol) return false;
    if (!hasPorts(protocol) || p.port === undefined) return true;
    return port !== undefined && port >= p.port && port <= (p.endPort ?? p.port);
  });
}

/** Whether the rule's destination and port conditions hold for (address, port). */
function tupleMatch(r: Rule, input: CompileInput, to: string, protocol: FlowProtocol, port: number | undefined): boolean {
  const dst = hostCidr(to);
  if (!dst) return false;
  if (!portMatch(r.ports, protocol, port)) return false;
  const texts = destinationTexts(r, input);
  return texts === null || inAny(dst, texts);
}

/** Whether the rule matches the flow: on its destination, or (DNAT) on the original one. */
export function ruleMatch(r: Rule, input: CompileInput, flow: Flow): "yes" | "original" | "no" {
  const ids = input.identities;
  if (!principalMatch(r.users, flow.uid, ids.users) || !principalMatch(r.groups, flow.gid, ids.groups)) return "no";
  if (!cgroupMatch(r.cgroups, flow.cgroup, input.cgroups)) return "no";
  if (tupleMatch(r, input, flow.to, flow.protocol, flow.port)) return "yes";
  if (flow.original && tupleMatch(r, input, flow.original.to, flow.protocol, flow.original.port)) return "original";
  return "no";
}

// ---- policies -------------------------------------------------------------------------------

/** Byte order of names (they are ASCII), not a locale's. */
function byteOrder(a: string, b: string): number {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return Buffer.compare(x, y);
}

/** The policies that select the node, in evaluation order: priority, then name by byte value. */
export function evaluationOrder(input: Pick<CompileInput, "policies" | "node">): EgressPolicy[] {
  return input.policies.filter((p) => selects(p.spec.nodeSelector, input.node.labels)).sort((a, b) => a.spec.priority - b.spec.priority || byteOrder(a.metadata.name, b.metadata.name));
}

/** Whether the flow is well formed: an address, a port only where the protocol has ports,
 *  ICMP to IPv4 and ICMPv6 to IPv6, an original destination of the same family. */
export function flowProblem(flow: Flow): string | null {
  const a = parseAddress(flow.to);
  if (!a) return `"${flow.to.slice(0, 60)}" is not an IPv4 or IPv6 address`;
  const fam = familyOfProtocol(flow.protocol);
  if (fam !== null && fam !== a.family) return `${flow.protocol} goes to IPv${fam} addresses, not ${flow.to}${fam === 4 ? " (use ICMPv6)" : " (use ICMP)"}`;
  if (!hasPorts(flow.protocol) && flow.port !== undefined) return `${flow.protocol} has no ports`;
  for (const p of [flow.port, flow.original?.port, flow.sourcePort]) if (p !== undefined && (!Number.isInteger(p) || p < 0 || p > 65535)) return `port ${p} is not 0-65535`;
  for (const id of [flow.uid, flow.gid]) if (!Number.isInteger(id) || id < 0 || id > 4294967294) return `id ${id} is not 0-4294967294`;
  if (flow.original) {
    const o = parseAddress(flow.original.to);
    if (!o) return `"${flow.original.to.slice(0, 60)}" is not an IPv4 or IPv6 address`;
    if (o.family !== a.family) return `the original destination ${flow.original.to} and ${flow.to} are of different families`;
    if (!hasPorts(flow.protocol) && flow.original.port !== undefined) return `${flow.protocol} has no ports`;
  }
  return null;
}

export function evaluate(input: CompileInput, flow: Flow): Explanation {
  const problem = flowProblem(flow);
  if (problem) throw new RangeError(problem);
  const path: Step[] = [];
  const audit: AuditHit[] = [];
  const guard = guardMatch(input, flow);
  if (guard !== null) {
    path.push({ step: "guard", entry: guard, action: "Allow" });
    return { verdict: "Allow", decidedBy: { kind: "guard", policy: null, rule: guard, ruleIndex: null }, audit, path };
  }
  let defaultDeny: EgressPolicy | null = null;
  for (const p of evaluationOrder(input)) {
    const name = p.metadata.name;
    const why = refusal(p, input);
    if (why !== null) {
      path.push({ step: "refused", policy: name, message: why });
      continue;
    }
    const enforce = p.spec.mode === "Enforce";
    if (enforce && p.spec.defaultAction === "Deny") defaultDeny ??= p;
    let matched = false;
    for (const [i, r] of p.spec.rules.entries()) {
      const m = ruleMatch(r, input, flow);
      if (m === "no") continue;
      matched = true;
      const base = { step: "rule", policy: name, mode: p.spec.mode, rule: r.name, ruleIndex: i, action: r.action, original: m === "original" } as const;
      if (enforce) {
        const allow = r.action === "Allow";
        path.push({ ...base, effect: allow ? "allow" : "deny" });
        return {
          verdict: allow ? "Allow" : "Deny",
          ...(allow ? {} : { denyResponse: p.spec.denyResponse }),
          decidedBy: { kind: "rule", policy: name, rule: r.name, ruleIndex: i },
          audit,
          path,
        };
      }
      if (r.action === "Deny") {
        audit.push({ policy: name, rule: r.name });
        path.push({ ...base, effect: "would-deny" });
      } else path.push({ ...base, effect: "next-policy" });
      break;
    }
    if (matched) continue;
    path.push({ step: "no-match", policy: name, mode: p.spec.mode });
    if (!enforce && p.spec.defaultAction === "Deny") {
      audit.push({ policy: name, rule: null });
      path.push({ step: "audit-default", policy: name, effect: "would-deny" });
    }
  }
  if (defaultDeny) {
    const name = defaultDeny.metadata.name;
    path.push({ step: "default", policy: name, action: "Deny" });
    return { verdict: "Deny", denyResponse: defaultDeny.spec.denyResponse, decidedBy: { kind: "default", policy: name, rule: null, ruleIndex: null }, audit, path };
  }
  path.push({ step: "default", policy: null, action: "Allow" });
  return { verdict: "Allow", decidedBy: { kind: "default", policy: null, rule: null, ruleIndex: null }, audit, path };
}
