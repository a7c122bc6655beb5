// A NodeEgressReport as an agent would write it, for controller tests that play the agents.
export function report(node: string, entries: { name: string; generation: number; result: string; denied?: number; message?: string; top?: string }[]): string {
  return `apiVersion: nftegress.io/v1alpha1
kind: NodeEgressReport
metadata: {name: ${node}}
status:
  rulesetHash: abc
  lastApplyTime: "2026-11-26T00:00:00Z"
  policies:
${entries
  .map(
    (e) => `    - name: ${e.name}
      generation: ${e.generation}
      mode: Enforce
      result: ${e.result}
${e.message ? `      message: "${e.message}"\n` : ""}      denied: {packets: ${e.denied ?? 0}, bytes: ${(e.denied ?? 0) * 60}}
      wouldDeny: {packets: 0, bytes: 0}
      topDeniedDestinations: [${e.top ? `{address: "${e.top}", port: 443, protocol: tcp, packets: ${e.denied ?? 0}}` : ""}]`,
  )
  .join("\n")}
`;
}
