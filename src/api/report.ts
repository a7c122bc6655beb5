// NodeEgressReport: written by one node's agent; name = node name.
import { z } from "zod";
import { ObjectMeta } from "./common.js";
import { TopDestination, UserDenials } from "./policy.js";

export const GUARD_ADDRESSES_SHOWN = 5;

export const PolicyReport = z.object({
  name: z.string(),
  generation: z.number().int(),
  mode: z.enum(["Audit", "Enforce"]),
  result: z.enum(["Applied", "Failed", "RolledBack", "Suspended"]),
  message: z.string().optional(),
  denied: z.object({ packets: z.number().int(), bytes: z.number().int() }),
  wouldDeny: z.object({ packets: z.number().int(), bytes: z.number().int() }),
  topDeniedDestinations: z.array(TopDestination).optional(),
  deniedByUser: z.array(UserDenials).optional(),
});
export type PolicyReport = z.infer<typeof PolicyReport>;

/** One thing the node's guard opens whatever the policies say (see README, "Always allowed"). */
export const GuardReport = z.object({
  name: z.string().max(64),
  protocol: z.enum(["TCP", "UDP"]).optional(),
  /** Ports and ranges; absent: any port. */
  ports: z.array(z.string().max(11)).max(16).optional(),
  /** How many destinations it opens (0: none, the entry opens nothing). */
  destinations: z.number().int().min(0),
  /** The first few of them. */
  addresses: z.array(z.string().max(64)).max(GUARD_ADDRESSES_SHOWN).optional(),
  /** Time-server names not resolved (yet), the first few. */
  unresolved: z.array(z.string().max(253)).max(GUARD_ADDRESSES_SHOWN).optional(),
});
export type GuardReport = z.infer<typeof GuardReport>;

export const NodeEgressReportStatus = z.object({
  rulesetHash: z.string().optional(),
  lastApplyTime: z.string().optional(),
  /** What the guard opens on this node, before any policy runs. */
  guard: z.array(GuardReport).max(80).optional(),
  policies: z.array(PolicyReport).max(1000).default([]),
});

export const NodeEgressReport = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("NodeEgressReport"),
  metadata: ObjectMeta,
  status: NodeEgressReportStatus.optional(),
});
export type NodeEgressReport = z.infer<typeof NodeEgressReport>;
