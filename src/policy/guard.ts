// The guard: what is accepted before any policy runs, so that no policy can cut a node off
// from what keeps it alive (design s3). Pure: the caller supplies resolvers and API endpoints.
import { z } from "zod";
import { CidrText } from "../api/policy.js";

export const FailsafeEntry = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]{1,40}$/),
  protocol: z.enum(["TCP", "UDP"]),
  ports: z.array(z.union([z.number().int().min(1).max(65535), z.string().regex(/^[0-9]{1,5}-[0-9]{1,5}$/)])).min(1),
  cidrs: z.array(CidrText).optional(),
});
export type FailsafeEntry = z.infer<typeof FailsafeEntry>;

export const Failsafe = z.array(FailsafeEntry).max(64);

export interface Endpoint {
  address: string;
  port: number;
}

export interface Guard {
  apiServers: Endpoint[];
  failsafe: FailsafeEntry[];
  /**
   * The node's own pod CIDRs (Node.spec.podCIDRs): kubelet's probes and the node's traffic to
   * its own pods stay open whatever the policies say, or a default-deny restarts every pod.
   */
  localPods?: string[];
}

/** Cloud metadata endpoints (AWS/GCP/Azure/OpenStack IPv4, AWS IPv6). */
export const METADATA_ADDRESSES = ["169.254.169.254", "fd00:ec2::254"];

export function defaultFailsafe(resolvers: readonly string[]): FailsafeEntry[] {
  const dns: FailsafeEntry[] = resolvers.length
    ? [
        { name: "dns-udp", protocol: "UDP", ports: [53], cidrs: [...resolvers] },
        { name: "dns-tcp", protocol: "TCP", ports: [53], cidrs: [...resolvers] },
      ]
    : [];
  return [
    ...dns,
    { name: "ntp", protocol: "UDP", ports: [123] },
    { name: "metadata", protocol: "TCP", ports: [80], cidrs: METADATA_ADDRESSES },
    { name: "vxlan", protocol: "UDP", ports: [4789, 8472] },
    { name: "geneve", protocol: "UDP", ports: [6081] },
    { name: "wireguard", protocol: "UDP", ports: ["51820-51821"] },
    { name: "bgp", protocol: "TCP", ports: [179] },
  ];
}
