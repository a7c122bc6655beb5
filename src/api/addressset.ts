// EgressAddressSet: reusable named destinations. A large set is several objects (chunks)
// sharing the label nftegress.io/set: NAME; without the label the object's name is the set name.
import { z } from "zod";
import { ObjectMeta } from "./common.js";
import { CidrText, Fqdn } from "./policy.js";

export const SET_LABEL = "nftegress.io/set";
export const MAX_SET_CHUNK = 10000;

export const EgressAddressSetSpec = z.strictObject({
  cidrs: z.array(CidrText).max(MAX_SET_CHUNK).default([]),
  fqdns: z.array(Fqdn).max(256).default([]),
});

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
