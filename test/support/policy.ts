import { policyId } from "../../src/policy/names.js";

// One EgressPolicy document for tests that write policy files: `body` is the spec's YAML,
// indented by two spaces.
export const policyDoc = (name: string, body: string): string => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
${body}
---
`;

/** The output chain's jump to a policy, as nft lists or we render it (its comment carries the
 *  generation, never the name; see compile.ts policyComment). `gen` is a regex fragment. */
export const policyJump = (name: string, gen = "\\d+"): RegExp => new RegExp(`jump ${policyId(name)} comment "policy gen:(${gen}) `);
