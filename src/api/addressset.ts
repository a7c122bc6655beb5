// EgressAddressSet: reusable named destinations. A large set is several objects (chunks)
// sharing the label nftegress.io/set: NAME; without the label the object's name is the set name.
import { z } from "zod";
import { ObjectMeta } from "./common.js";
import { CidrText, Fqdn, isCidrText } from "./policy.js";

export const SET_LABEL = "nftegress.io/set";
export const MAX_SET_CHUNK = 10000;

export const EgressAddressSetSpec = z
  .strictObject({
    cidrs: z.array(CidrText).max(MAX_SET_CHUNK).default([]).describe("IPv4 and IPv6 addresses or CIDRs without host bits, e.g. 203.0.113.0/24, 2001:db8:100::/40."),
    fqdns: z.array(Fqdn).max(256).default([]).describe("DNS names resolved by the agent on each node, honouring TTLs."),
  })
  .describe("Destinations of the set. Several objects with the label nftegress.io/set: NAME form one set NAME; without the label the object's name is the set name.");

export const EgressAddressSet = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("EgressAddressSet"),
  metadata: ObjectMeta,
  spec: EgressAddressSetSpec,
});
export type EgressAddressSet = z.infer<typeof EgressAddressSet>;

/** The set name rules use for this object: its label, else its own name. */
export function setName(s: EgressAddressSet): string {
  return s.metadata.labels?.[SET_LABEL] ?? s.metadata.name;
}

/**
 * EgressAddressSet.safeParse, faster for large lists (zod's per-element work made 100k CIDRs
 * take ~0.3 s): when the CIDR list is within bounds and every entry is valid, one loop checks
 * it and zod validates the rest of the object; otherwise zod validates all of it, so the
 * issues reported are exactly the schema's.
 */
export function parseAddressSet(raw: unknown): ReturnType<typeof EgressAddressSet.safeParse> {
  const spec: unknown = typeof raw === "object" && raw !== null && "spec" in raw ? raw.spec : undefined;
  if (typeof raw !== "object" || raw === null || typeof spec !== "object" || spec === null) return EgressAddressSet.safeParse(raw);
  const cidrs: unknown = "cidrs" in spec ? spec.cidrs : undefined;
  if (!Array.isArray(cidrs) || cidrs.length > MAX_SET_CHUNK || !cidrs.every(isCidrText)) return EgressAddressSet.safeParse(raw);
  const rest = EgressAddressSet.safeParse({ ...raw, spec: { ...spec, cidrs: [] } });
  if (!rest.success) return EgressAddressSet.safeParse(raw);
  return { ...rest, data: { ...rest.data, spec: { ...rest.data.spec, cidrs: [...cidrs] } } };
}
