// Turns what an Audit policy would have denied into reviewed Allow rules (pure): one rule per
// protocol and port, listing the destinations seen. Destinations an explicit Deny rule of the
// policy matches are left out, with the reason.
import type { EgressPolicy, Port, Rule } from "../api/policy.js";
import { contains, parseCidr, formatCidr } from "../net/cidr.js";

export interface Seen {
  address: string;
  port?: number | undefined;
  protocol: string;
  packets: number;
}

export interface Suggestion {
  policy: EgressPolicy;
  added: Rule[];
  skipped: { destination: Seen; reason: string }[];
}

const PROTOCOLS: Record<string, Port["protocol"]> = { tcp: "TCP", udp: "UDP", sctp: "SCTP", icmp: "ICMP", "ipv6-icmp": "ICMPv6", icmpv6: "ICMPv6" };

function portMatches(ports: readonly Port[] | undefined, protocol: Port["protocol"], port: number | undefined): boolean {
  if (!ports?.length) return true;
  return ports.some((p) => p.protocol === protocol && (p.port === undefined || (port !== undefined && port >= p.port && port <= (p.endPort ?? p.port))));
}

function denyingRule(policy: EgressPolicy, d: Seen, protocol: Port["protocol"]): Rule | undefined {
  const addr = parseCidr(d.address);
  if (!addr.ok) return undefined;
  return policy.spec.rules.find((r) => {
    if (r.action !== "Deny" || r.users?.length || r.groups?.length || r.cgroups?.length) return false;
    if (!portMatches(r.ports, protocol, d.port)) return false;
    if (!r.to) return true;
    return (r.to.cidrs ?? []).some((c) => {
      const p = parseCidr(c);
      return p.ok && contains(p.cidr, addr.cidr);
    });
  });
}

export function suggest(policy: EgressPolicy, seen: readonly Seen[]): Suggestion {
  const groups = new Map<string, { protocol: Port["protocol"]; port?: number; cidrs: Set<string> }>();
  const skipped: Suggestion["skipped"] = [];
  for (const d of seen) {
    const protocol = PROTOCOLS[d.protocol.toLowerCase()];
    const addr = parseCidr(d.address);
    if (!protocol || !addr.ok) {
      skipped.push({ destination: d, reason: "not a protocol or address a rule can name" });
      continue;
    }
    const deny = denyingRule(policy, d, protocol);
    if (deny) {
      skipped.push({ destination: d, reason: `denied by rule ${deny.name}` });
      continue;
    }
    const key = `${protocol}/${d.port ?? ""}`;
    const g = groups.get(key) ?? { protocol, ...(d.port !== undefined ? { port: d.port } : {}), cidrs: new Set<string>() };
    g.cidrs.add(formatCidr(addr.cidr));
    groups.set(key, g);
  }
  const taken = new Set(policy.spec.rules.map((r) => r.name));
  const added: Rule[] = [];
  for (const g of [...groups.values()].sort((a, b) => a.protocol.localeCompare(b.protocol) || (a.port ?? 0) - (b.port ?? 0))) {
    let name = `suggested-${g.protocol.toLowerCase()}${g.port !== undefined ? `-${g.port}` : ""}`;
    for (let i = 2; taken.has(name); i++) name = `suggested-${g.protocol.toLowerCase()}${g.port !== undefined ? `-${g.port}` : ""}-${i}`;
    taken.add(name);
    const ports: Port[] = g.port !== undefined ? [{ protocol: g.protocol, port: g.port }] : [{ protocol: g.protocol }];
    added.push({ name, action: "Allow", to: { cidrs: [...g.cidrs].sort() }, ports });
  }
  return { policy: { ...policy, spec: { ...policy.spec, rules: [...policy.spec.rules, ...added] } }, added, skipped };
}
