// nftegress suggest POLICY: what an Audit policy would have denied, as reviewed Allow rules.
import { policyId } from "../policy/names.js";
import yaml from "js-yaml";
import { readStatus } from "../agent/counters.js";
import { EgressPolicy } from "../api/policy.js";
import { kubeError } from "../kube/client.js";
import { RealNftExecutor } from "../nft/executor.js";
import { suggest, type Seen } from "../policy/suggest.js";
import { InputError, loadDocuments } from "../source/documents.js";
import { UsageError, parse } from "./args.js";
import { KUBE_HELP, KUBE_OPTIONS, kubeClient } from "./kubeconfig.js";

export const SUGGEST_HELP = `Usage: nftegress suggest POLICY [--kubeconfig FILE] [--context NAME]
       nftegress suggest POLICY -f FILE|DIR [--netns NAME]

Turns the destinations a policy denied or would have denied (Audit) into Allow rules: one
rule per protocol and port, appended to the policy, printed as YAML to review and apply.
Destinations that one of the policy's own Deny rules matches are left out (listed in the
header). In a cluster the data is the status' merged top 10; on a host (-f) it is every
destination the kernel recorded (up to 4096 per policy, the last hour).

  -f FILE|DIR          the policy files (host mode: counts come from this host's kernel)
  --netns NAME         host mode: read the kernel counts inside this network namespace
  cluster mode (without -f):
${KUBE_HELP}`;

function clean(p: EgressPolicy): unknown {
  const { name, labels, annotations } = p.metadata;
  return { apiVersion: p.apiVersion, kind: p.kind, metadata: { name, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) }, spec: p.spec };
}

export async function suggestCommand(argv: string[], out: (l: string) => void): Promise<number> {
  const { values: v, positionals } = parse(argv, { file: { type: "string", short: "f" }, netns: { type: "string" }, ...KUBE_OPTIONS }, SUGGEST_HELP, true);
  if (v.help) return (out(SUGGEST_HELP), 0);
  const name = positionals[0];
  if (!name || positionals.length > 1) throw new UsageError(`one POLICY name is required\n\n${SUGGEST_HELP}`);
  let policy: EgressPolicy;
  let seen: Seen[];
  let source: string;
  if (v.file) {
    const docs = loadDocuments(v.file);
    const p = docs.policies.find((x) => x.metadata.name === name);
    if (!p) throw new InputError(`${v.file}: no EgressPolicy named "${name}"`);
    policy = p;
    const status = await readStatus(new RealNftExecutor({ netns: v.netns }), new Map(), { topK: 4096 });
    const applied = status.policies.find((x) => x.id === policyId(name));
    if (!applied) throw new InputError(`EgressPolicy/${name} is not applied on this host${v.netns ? ` (netns ${v.netns})` : ""}: nothing was counted`);
    seen = applied.topDeniedDestinations;
    source = "this host's kernel";
  } else {
    const client = kubeClient(v);
    let raw: unknown;
    try {
      raw = await client.custom.getClusterCustomObject({ group: "nftegress.io", version: "v1alpha1", plural: "egresspolicies", name }, client.options());
    } catch (e) {
      throw new InputError(`EgressPolicy/${name} from ${client.server}: ${kubeError(e).message}`);
    }
    policy = EgressPolicy.parse(raw);
    seen = policy.status?.topDeniedDestinations ?? [];
    source = "the policy status (merged top 10 over its nodes)";
  }
  const s = suggest(policy, seen);
  const header = [
    `# nftegress suggest: ${s.added.length} rules from ${seen.length - s.skipped.length} destinations EgressPolicy/${name} ${policy.spec.mode === "Audit" ? "would have denied" : "denied"}, from ${source}.`,
    "# Review before applying: every suggested destination becomes allowed.",
    ...s.skipped.map((k) => `# skipped ${k.destination.address}${k.destination.port !== undefined ? `:${k.destination.port}` : ""}/${k.destination.protocol}: ${k.reason}`),
  ];
  out([...header, yaml.dump(clean(s.policy), { lineWidth: 120, noRefs: true }).trimEnd()].join("\n"));
  return 0;
}
