// The parts of built-in Kubernetes objects nftegress reads, validated at the boundary.
import { z } from "zod";

export const NodeInfo = z.object({
  metadata: z.object({
    name: z.string(),
    uid: z.string(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.object({ podCIDR: z.string().nullish(), podCIDRs: z.array(z.string()).nullish() }).nullish(),
});
export type NodeInfo = z.infer<typeof NodeInfo>;

/** Of every Node, only its name and InternalIP/ExternalIP addresses (compact: clusters have
 *  thousands of Nodes, and the rest of a Node is large and changes often). */
export const NodeAddresses = z
  .object({
    metadata: z.object({ name: z.string() }),
    status: z.object({ addresses: z.array(z.object({ type: z.string(), address: z.string() })).nullish() }).nullish(),
  })
  .transform((n) => ({
    name: n.metadata.name,
    addresses: [...new Set((n.status?.addresses ?? []).filter((a) => a.type === "InternalIP" || a.type === "ExternalIP").map((a) => a.address))].sort(),
  }));
export type NodeAddresses = z.output<typeof NodeAddresses>;

export const EndpointSlice = z.object({
  metadata: z.object({ name: z.string() }),
  addressType: z.string().optional(),
  endpoints: z
    .array(z.object({ addresses: z.array(z.string()), conditions: z.object({ ready: z.boolean().nullish() }).nullish() }))
    .nullish(),
  ports: z.array(z.object({ port: z.number().int().nullish(), protocol: z.string().nullish() })).nullish(),
});
export type EndpointSlice = z.infer<typeof EndpointSlice>;

/** What the agent reads of its own DaemonSet: whether it is being deleted. */
export const DaemonSetInfo = z.object({
  metadata: z.object({
    name: z.string(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    deletionTimestamp: z.string().nullish(),
  }),
});
export type DaemonSetInfo = z.infer<typeof DaemonSetInfo>;

export const SUSPEND_ANNOTATION = "nftegress.io/suspend";
