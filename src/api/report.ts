// NodeEgressReport: written by one node's agent; name = node name.
import { z } from "zod";
import { ObjectMeta } from "./common.js";
import { TopDestination, UserDenials } from "./policy.js";

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

export const NodeEgressReportStatus = z.object({
  rulesetHash: z.string().optional(),
  lastApplyTime: z.string().optional(),
  policies: z.array(PolicyReport).max(1000).default([]),
});

export const NodeEgressReport = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("NodeEgressReport"),
  metadata: ObjectMeta,
  status: NodeEgressReportStatus.optional(),
});
export type NodeEgressReport = z.infer<typeof NodeEgressReport>;
