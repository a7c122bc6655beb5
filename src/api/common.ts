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
  key: z.string().min(1).max(317),
  operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
  values: z.array(z.string().max(63)).max(64).optional(),
});

export const LabelSelector = z.strictObject({
  matchLabels: z.record(z.string().max(317), z.string().max(63)).optional(),
  matchExpressions: z.array(LabelSelectorRequirement).max(32).optional(),
});
export type LabelSelector = z.infer<typeof LabelSelector>;

export const Condition = z.object({
  type: z.string(),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string(),
  reason: z.string(),
  message: z.string(),
});
export type Condition = z.infer<typeof Condition>;
