// The guard: what is accepted before any policy runs, so that no policy can cut a node off
// from what keeps it alive (design s3). Every entry names where it goes: none is open to any
// address (a default-deny policy would otherwise leave a tunnel to the internet: WireGuard,
// VXLAN and NTP carry arbitrary data). Pure: the caller supplies resolvers, time servers,
// node addresses and API endpoints.
import { z } from "zod";
import { CidrText } from "../api/policy.js";

const Ports = z.array(z.union([z.number().int().min(1).max(65535), z.string().regex(/^[0-9]{1,5}-[0-9]{1,5}$/)])).min(1);

export const FailsafeEntry = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9-]{1,40}$/),
    protocol: z.enum(["TCP", "UDP"]),
    ports: Ports,
    /** Addresses or prefixes the entry opens. */
    cidrs: z.array(CidrText).min(1).optional(),
    /** `nodes`: the cluster's node addresses (every Node's status.addresses, or --node-addresses). */
    to: z.literal("nodes", { message: 'to: the only value is "nodes" (the cluster\'s node addresses)' }).optional(),
  })
  .refine((e) => e.cidrs !== undefined || e.to !== undefined, {
    message: 'names no destination: give cidrs, or to: nodes (an entry is never open to any address; write cidrs: ["0.0.0.0/0", "::/0"] if that is really meant)',
  });
export type FailsafeEntry = z.infer<typeof FailsafeEntry>;

export const Failsafe = z.array(FailsafeEntry).max(64);

export interface Endpoint {
  address: string;
  port: number;
}

export interface Guard {
  apiServers: Endpoint[];
  /** Built in code (defaultFailsafe) or read from --failsafe FILE. A built entry may have
   *  `cidrs: []` (NTP with no time server configured): it opens nothing and is still shown. */
  failsafe: FailsafeEntry[];
  /**
   * The node's own pod CIDRs (Node.spec.podCIDRs): kubelet's probes and the node's traffic to
   * its own pods stay open whatever the policies say, or a default-deny restarts every pod.
   */
  localPods?: string[];
  /** What `to: nodes` means: the cluster's node addresses (hosts, or prefixes when configured). */
  nodes?: readonly string[];
  /** Time-server host names not resolved (yet): shown, open nothing. */
  unresolved?: readonly string[];
}

/** Cloud metadata endpoints (AWS/GCP/Azure/OpenStack IPv4, AWS IPv6). */
export const METADATA_ADDRESSES = ["169.254.169.254", "fd00:ec2::254"];

export interface FailsafeInputs {
  /** The node's DNS resolvers (resolv.conf). */
  resolvers: readonly string[];
  /** The addresses of the host's configured time servers (chrony, timesyncd, ntpd). */
  timeServers?: readonly string[];
  /** Configured BGP peers (addresses or prefixes): without any, no BGP entry at all. */
  bgpPeers?: readonly string[];
}

/** The default failsafe list. Nothing in it is open to any address. */
export function defaultFailsafe({ resolvers, timeServers = [], bgpPeers = [] }: FailsafeInputs): FailsafeEntry[] {
  const dns: FailsafeEntry[] = resolvers.length
    ? [
        { name: "dns-udp", protocol: "UDP", ports: [53], cidrs: [...resolvers] },
        { name: "dns-tcp", protocol: "TCP", ports: [53], cidrs: [...resolvers] },
      ]
    : [];
  return [
    ...dns,
    { name: "ntp", protocol: "UDP", ports: [123], cidrs: [...timeServers] },
    { name: "metadata", protocol: "TCP", ports: [80], cidrs: METADATA_ADDRESSES },
    { name: "vxlan", protocol: "UDP", ports: [4789, 8472], to: "nodes" },
    { name: "geneve", protocol: "UDP", ports: [6081], to: "nodes" },
    { name: "wireguard", protocol: "UDP", ports: ["51820-51821"], to: "nodes" },
    ...(bgpPeers.length ? [{ name: "bgp", protocol: "TCP", ports: [179], cidrs: [...bgpPeers] } satisfies FailsafeEntry] : []),
  ];
}

/** One thing the guard opens, for render, the NodeEgressReport and `status`. */
export interface GuardEntry {
  name: string;
  /** "TCP", "UDP"; absent: any protocol (local pods). */
  protocol?: "TCP" | "UDP";
  /** Ports and ranges as text; absent: any port. */
  ports?: string[];
  /** Every destination it opens (addresses and prefixes, as given). Empty: opens nothing. */
  destinations: string[];
  /** Time-server names not resolved (yet). */
  unresolved?: string[];
}

/** What the guard opens beyond established flows, loopback, ICMPv6 ND/MLD and DHCP. */
export function guardEntries(guard: Guard): GuardEntry[] {
  const out: GuardEntry[] = [];
  if (guard.apiServers.length) {
    const ports = [...new Set(guard.apiServers.map((e) => String(e.port)))].sort();
    out.push({ name: "api-server", protocol: "TCP", ports, destinations: [...new Set(guard.apiServers.map((e) => e.address))].sort() });
  }
  if (guard.localPods?.length) out.push({ name: "local-pods", destinations: [...guard.localPods] });
  for (const f of guard.failsafe) {
    const destinations = [...new Set([...(f.cidrs ?? []), ...(f.to === "nodes" ? (guard.nodes ?? []) : [])])];
    const unresolved = f.name === "ntp" && guard.unresolved?.length ? { unresolved: [...guard.unresolved] } : {};
    out.push({ name: f.name, protocol: f.protocol, ports: f.ports.map(String), destinations, ...unresolved });
  }
  return out;
}

/** One line per entry, for humans: `ntp UDP 123 -> 192.0.2.123 (1)`. */
export function formatGuardEntry(e: GuardEntry, max = 8): string {
  const what = e.protocol ? `${e.protocol} ${e.ports?.join(",") ?? "any port"}` : "any protocol";
  const shown = e.destinations.slice(0, max).join(", ");
  const more = e.destinations.length > max ? `, ... (${e.destinations.length} in all)` : "";
  const dest = e.destinations.length ? `${shown}${more}` : "nothing (no destination)";
  const unres = e.unresolved?.length ? `; not resolved: ${e.unresolved.join(", ")}` : "";
  return `${e.name}: ${what} -> ${dest}${unres}`;
}
