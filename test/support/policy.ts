// One EgressPolicy document for tests that write policy files: `body` is the spec's YAML,
// indented by two spaces.
export const policyDoc = (name: string, body: string): string => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
${body}
---
`;
