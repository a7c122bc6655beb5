// NodeEgressReport: written by one node's agent; name = node name.
import { z } from "zod";
import { ObjectMeta } from "./common.js";
import { TopDestination, UserDenials } from "./policy.js";

export const GUARD_ADDRESSES_SHOWN = 5;

const Counter = (what: string) =>
  z
    .object({ packets: z.number().int().describe(`Packets ${what}.`), bytes: z.number().int().describe(`Bytes ${what}.`) })
    .describe(`Packets and bytes ${what} on this node.`);

export const PolicyReport = z.object({
  name: z.string().describe("EgressPolicy name."),
  generation: z.number().int().describe("The policy generation this entry is about."),
  mode: z.enum(["Audit", "Enforce"]).describe("The mode the node enforces the policy in."),
  result: z.enum(["Applied", "Failed", "RolledBack", "Suspended"]).describe("Applied; Failed (invalid on this node, see message); RolledBack (applied, then the previous ruleset restored because the node could not reach its API server in time); Suspended (the agent is suspended)."),
  message: z.string().optional().describe("Why the result is not Applied."),
  denied: Counter("denied"),
  wouldDeny: Counter("that would have been denied (Audit)"),
  topDeniedDestinations: z.array(TopDestination).optional().describe("Most denied (in Audit: would-deny) destinations on this node."),
  deniedByUser: z.array(UserDenials).optional().describe("Denied (in Audit: would-deny) packets by sending uid on this node."),
});
export type PolicyReport = z.infer<typeof PolicyReport>;

/** One thing the node's guard opens whatever the policies say (see README, "Always allowed"). */
export const GuardReport = z.object({
  name: z.string().max(64).describe("The guard entry, e.g. dns, ntp, apiserver."),
  protocol: z.enum(["TCP", "UDP"]).optional().describe("Protocol it opens; absent: any."),
  /** Ports and ranges; absent: any port. */
  ports: z.array(z.string().max(11)).max(16).optional().describe("Ports and ranges it opens; absent: any port."),
  /** How many destinations it opens (0: none, the entry opens nothing). */
  destinations: z.number().int().min(0).describe("How many destinations it opens (0: none, the entry opens nothing)."),
  /** The first few of them. */
  addresses: z.array(z.string().max(64)).max(GUARD_ADDRESSES_SHOWN).optional().describe("The first few of them."),
  /** Time-server names not resolved (yet), the first few. */
  unresolved: z.array(z.string().max(253)).max(GUARD_ADDRESSES_SHOWN).optional().describe("Time-server names not resolved (yet), the first few."),
});
export type GuardReport = z.infer<typeof GuardReport>;

export const NodeEgressReportStatus = z
  .object({
    rulesetHash: z.string().optional().describe("Hash of the ruleset the node enforces."),
    lastApplyTime: z.string().optional().describe("When the agent last applied a ruleset (RFC 3339)."),
    /** What the guard opens on this node, before any policy runs. */
    guard: z.array(GuardReport).max(80).optional().describe("What the guard opens on this node, before any policy runs."),
    policies: z.array(PolicyReport).max(1000).default([]).describe("One entry per policy selecting this node."),
  })
  .describe("Written by the node's agent: what it enforces and what it counted.");

export const NodeEgressReport = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("NodeEgressReport"),
  metadata: ObjectMeta,
  status: NodeEgressReportStatus.optional(),
});
export type NodeEgressReport = z.infer<typeof NodeEgressReport>;
