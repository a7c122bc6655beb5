// Shared schema pieces: object metadata, label selectors, names, and the character rules that
// keep every user string safe to place in nft text.
import { z } from "zod";

export const GROUP = "nftegress.io";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;

/** Characters nft text may carry in comments and log prefixes (nft strings have no escapes). */
export const SAFE_TEXT = /^[A-Za-z0-9 ._:/-]*$/;

/** DNS-1123 label: rule names. */
export const DnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit");

/** DNS-1123 subdomain: object names. */
export const DnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    "must be a DNS subdomain: lower-case letters, digits, '-' and '.'",
  );

export const ObjectMeta = z.looseObject({
  name: DnsSubdomain,
  generation: z.number().int().optional(),
  resourceVersion: z.string().optional(),
  uid: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});
export type ObjectMeta = z.infer<typeof ObjectMeta>;

export const LabelSelectorRequirement = z.strictObject({
  key: z.string().min(1).max(317).describe("The label key."),
  operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]).describe("How the key's value is compared with values."),
  values: z.array(z.string().max(63)).max(64).optional().describe("Values for In and NotIn; empty for Exists and DoesNotExist."),
});

export const LabelSelector = z.strictObject({
  matchLabels: z.record(z.string().max(317), z.string().max(63)).optional().describe("Labels a node must carry, all of them (key: value)."),
  matchExpressions: z.array(LabelSelectorRequirement).max(32).optional().describe("Label requirements a node must meet, all of them."),
});
export type LabelSelector = z.infer<typeof LabelSelector>;

export const Condition = z.object({
  type: z.string().describe("Condition type, e.g. Ready, Reconciling, Stalled."),
  status: z.enum(["True", "False", "Unknown"]).describe("Whether the condition holds."),
  observedGeneration: z.number().int().optional().describe("The generation the condition was set for."),
  lastTransitionTime: z.string().describe("When the status last changed (RFC 3339)."),
  reason: z.string().describe("One CamelCase word saying why, e.g. Applied, NoNodesSelected, Progressing, NodeFailures."),
  message: z.string().describe("Human-readable details."),
});
export type Condition = z.infer<typeof Condition>;
