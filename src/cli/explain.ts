// nftegress explain: which guard entry, policy and rule decide one flow, offline (policy files,
// or a cluster's objects read through the API), by the evaluator (src/policy/evaluate.ts).
import { z } from "zod";
import { EgressPolicy, MAX_ID } from "../api/policy.js";
import { parseAddressSet, type EgressAddressSet } from "../api/addressset.js";
import { EndpointSlice, NodeAddresses, NodeInfo } from "../api/kube.js";
import { buildStrict, defaultNodeName } from "../agent/build.js";
import { readHost } from "../agent/inputs.js";
import { primaryGroups, userNames } from "../host/identities.js";
import { kubeError } from "../kube/client.js";
import { parseAddress } from "../net/cidr.js";
import type { CompileInput } from "../policy/compile.js";
import { FLOW_PROTOCOLS, evaluate, flowProblem, type Explanation, type Flow, type FlowProtocol, type Step } from "../policy/evaluate.js";
import { InputError, loadDocuments } from "../source/documents.js";
import { HOST_HELP, HOST_OPTIONS, UsageError, hostOptions, parse, parseLabels } from "./args.js";
import { KUBE_HELP, KUBE_OPTIONS, kubeClient } from "./kubeconfig.js";

type Out = (line: string) => void;

// --group is the flow's group here, so the group file is --group-file (elsewhere --group).
const { group: _groupFile, ...HOST_FILE_OPTIONS } = HOST_OPTIONS;
const HOST_FILE_HELP = HOST_HELP.replace("  --group FILE             group file for group names", "  --group-file FILE        group file for group names");

export const EXPLAIN_HELP = `Usage: nftegress explain -f FILE|DIR --to ADDR --protocol PROTO [flow options] [options]
       nftegress explain --node NAME --to ADDR --protocol PROTO [flow options] [--kubeconfig FILE]

Says what the policies decide for one new flow, and why: the guard entry that accepts it, or
the policy and rule that decide it, every Audit policy that would deny it on the way, or the
default and the policy a default denial is counted for. Nothing is applied or read from the
kernel. Exit 0 whatever the verdict. FQDNs are not resolved: rules that only name FQDNs match
nothing here (as in render).

Flow:
  --to ADDR                destination address (after DNAT, if any)
  --protocol PROTO         TCP, UDP, SCTP, ICMP (IPv4) or ICMPv6 (IPv6)
  --port N                 destination port (TCP, UDP, SCTP; required for them)
  --user NAME|UID          the sending socket's owner (default 0); names from --passwd
  --group NAME|GID         the socket's group, the sender's effective gid (default: the
                           user's primary group in --passwd, else 0); names from --group-file
  --cgroup PATH            the sender's cgroup v2 path, e.g. system.slice/apt-daily.service
                           (default: the root cgroup, which no cgroups condition matches)
  --original-to ADDR       the destination before DNAT (a Service address), if translated
  --original-port N        the port before DNAT (default: --port)

Source (one of):
  -f FILE|DIR              policy and address-set files; cgroups are those that exist here
  --node NAME              the cluster's EgressPolicies and EgressAddressSets, and the Node's
                           labels, pod CIDRs, the API server's endpoints and the Nodes'
                           addresses; every cgroup a rule names is taken to exist on the node
  -o, --output FORMAT      text (default) or json

${HOST_FILE_HELP}
${KUBE_HELP}`;

const OPTIONS = {
  file: { type: "string", short: "f" },
  node: { type: "string" },
  to: { type: "string" },
  protocol: { type: "string" },
  port: { type: "string" },
  user: { type: "string" },
  group: { type: "string" },
  cgroup: { type: "string" },
  "original-to": { type: "string" },
  "original-port": { type: "string" },
  output: { type: "string", short: "o", default: "text" },
  ...HOST_FILE_OPTIONS,
  "group-file": { type: "string", default: "/etc/group" },
  ...KUBE_OPTIONS,
} as const;

function portFlag(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw new UsageError(`${flag} must be a port 1-65535, not "${text.slice(0, 40)}"`);
  return Number(text);
}

function principal(kind: "user" | "group", text: string, names: ReadonlyMap<string, number>, file: string): number {
  if (/^[0-9]{1,10}$/.test(text)) {
    if (Number(text) > MAX_ID) throw new InputError(`--${kind}: a numeric id must be 0-${MAX_ID}`);
    return Number(text);
  }
  const id = names.get(text);
  if (id === undefined) throw new InputError(`--${kind}: no ${kind} "${text.slice(0, 40)}" in ${file}`);
  return id;
}

/** The cluster's view for --node: what the agent on that node compiles. */
async function clusterInput(v: { node: string; kubeconfig?: string | undefined; context?: string | undefined }, host: ReturnType<typeof hostOptions>): Promise<CompileInput> {
  const client = kubeClient(v);
  const at = `from ${client.server}`;
  const call = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    try {
      return await f();
    } catch (e) {
      throw new InputError(`${what} ${at}: ${kubeError(e).message}`);
    }
  };
  const group = "nftegress.io";
  const items = (raw: unknown) => z.object({ items: z.array(z.unknown()) }).parse(raw).items;
  const node = NodeInfo.parse(await call(`Node/${v.node}`, () => client.core.readNode({ name: v.node }, client.options())));
  const policies = items(await call("listing EgressPolicies", () => client.custom.listClusterCustomObject({ group, version: "v1alpha1", plural: "egresspolicies" }, client.options()))).flatMap((i) => {
    const p = EgressPolicy.safeParse(i);
    return p.success ? [p.data] : [];
  });
  const addressSets = items(await call("listing EgressAddressSets", () => client.custom.listClusterCustomObject({ group, version: "v1alpha1", plural: "egressaddresssets" }, client.options()))).flatMap((i): EgressAddressSet[] => {
    const s = parseAddressSet(i);
    return s.success ? [s.data] : [];
  });
  const nodes = (await call("listing Nodes", () => client.core.listNode({}, client.options()))).items.flatMap((n) => {
    const a = NodeAddresses.safeParse(n);
    return a.success ? [a.data] : [];
  });
  const slices = (await call("listing EndpointSlices", () => client.discovery.listNamespacedEndpointSlice({ namespace: "default", labelSelector: "kubernetes.io/service-name=kubernetes" }, client.options()))).items.flatMap((s) => {
    const e = EndpointSlice.safeParse(s);
    return e.success ? [e.data] : [];
  });
  const { apiServerEndpoints, clusterNodeAddresses } = await import("../agent/cluster.js");
  const localPods = node.spec?.podCIDRs ?? (node.spec?.podCIDR ? [node.spec.podCIDR] : []);
  const read = readHost({ ...host, clusterNodes: clusterNodeAddresses(nodes) }, apiServerEndpoints(slices, client.server), localPods);
  const named = policies.flatMap((p) => p.spec.rules.flatMap((r) => r.cgroups ?? []).map((c) => c.replace(/^\/+/, "")));
  return {
    policies,
    node: { name: node.metadata.name, labels: node.metadata.labels ?? {} },
    addressSets,
    identities: read.identities,
    fqdns: new Map(),
    cgroups: new Map(named.map((c) => [c, c])),
    guard: read.guard,
  };
}

function describeFlow(f: Flow, userName: string | undefined): string {
  const port = f.port !== undefined ? `:${f.port}` : "";
  const dst = f.to.includes(":") && port ? `[${f.to}]${port}` : `${f.to}${port}`;
  const orig = f.original ? ` (DNAT from ${f.original.to}${f.original.port !== undefined ? ` port ${f.original.port}` : ""})` : "";
  return `${f.protocol} to ${dst}${orig} as uid ${f.uid}${userName ? ` (${userName})` : ""}, gid ${f.gid}${f.cgroup ? `, cgroup ${f.cgroup}` : ""}`;
}

function stepText(s: Step): string {
  switch (s.step) {
    case "guard":
      return `guard entry ${s.entry} accepts it before any policy`;
    case "refused":
      return `EgressPolicy/${s.policy}: not applied on this node (${s.message})`;
    case "rule": {
      const via = s.original ? " on its original destination" : "";
      const what = { allow: "allows it", deny: "denies it", "would-deny": "would deny it (Audit: counted, then the next policy)", "next-policy": "Audit: the next policy decides" }[s.effect];
      return `EgressPolicy/${s.policy} (${s.mode}): rule ${s.rule} [${s.ruleIndex}] (${s.action}) matches${via}: ${what}`;
    }
    case "no-match":
      return `EgressPolicy/${s.policy} (${s.mode}): no rule matches`;
    case "audit-default":
      return `EgressPolicy/${s.policy} (Audit): its defaultAction Deny would deny it (counted, then the next policy)`;
    case "default":
      return s.policy ? `no policy decided: denied by default, counted for EgressPolicy/${s.policy} (the first Enforce policy with defaultAction Deny)` : "no policy decided and no Enforce policy has defaultAction Deny: allowed by default";
  }
}

export function explainText(e: Explanation, flow: string): string[] {
  const how = e.verdict === "Deny" ? ` (${e.denyResponse === "Reject" ? "Reject: a TCP reset, else ICMP admin-prohibited" : "Drop"})` : "";
  const lines = [`${e.verdict}${how}: ${flow}`];
  e.path.forEach((s, i) => lines.push(`  ${i + 1}. ${stepText(s)}`));
  if (e.audit.length) lines.push(`would be denied by Audit: ${e.audit.map((a) => `${a.policy}${a.rule ? `/${a.rule}` : " (default)"}`).join(", ")}`);
  return lines;
}

export async function explainCommand(argv: string[], out: Out, err: Out = out): Promise<number> {
  const { values: v } = parse(argv, OPTIONS, EXPLAIN_HELP);
  if (v.help) return (out(EXPLAIN_HELP), 0);
  if (v.output !== "text" && v.output !== "json") throw new UsageError(`--output must be text or json, not "${v.output}"`);
  if ((v.file === undefined) === (v.node === undefined)) throw new UsageError(`give one of -f FILE|DIR and --node NAME\n\n${EXPLAIN_HELP}`);
  if (!v.to) throw new UsageError(`--to ADDR is required\n\n${EXPLAIN_HELP}`);
  if (!v.protocol) throw new UsageError(`--protocol is required (${FLOW_PROTOCOLS.join(", ")})\n\n${EXPLAIN_HELP}`);
  const protocol = FLOW_PROTOCOLS.find((p) => p === v.protocol);
  if (!protocol) throw new UsageError(`--protocol must be one of ${FLOW_PROTOCOLS.join(", ")}, not "${v.protocol.slice(0, 40)}"`);
  const port = portFlag("--port", v.port);
  const withPorts = protocol === "TCP" || protocol === "UDP" || protocol === "SCTP";
  if (withPorts && port === undefined) throw new UsageError(`--port is required with ${protocol}`);
  if (!withPorts && (port !== undefined || v["original-port"] !== undefined)) throw new UsageError(`${protocol} has no ports: --port is only for TCP, UDP and SCTP`);
  if (v["original-port"] !== undefined && v["original-to"] === undefined) throw new UsageError("--original-port needs --original-to");
  if (!parseAddress(v.to)) throw new InputError(`--to: "${v.to.slice(0, 60)}" is not an IPv4 or IPv6 address`);

  const host = hostOptions({ ...v, group: v["group-file"] });
  let input: CompileInput;
  if (v.file !== undefined) {
    const docs = loadDocuments(v.file, (l) => err(`note: ${l}`));
    const opts = { ...host, nodeName: defaultNodeName(v["node-name"]), nodeLabels: parseLabels(v["node-labels"]) };
    // Like render: a policy refused on this node is an error, not a silent omission.
    input = buildStrict(docs, opts).input;
  } else {
    input = await clusterInput({ ...v, node: v.node ?? "" }, host);
  }

  const uid = v.user === undefined ? 0 : principal("user", v.user, input.identities.users, v.passwd);
  const userName = userNames(input.identities).get(uid);
  const gid = v.group !== undefined ? principal("group", v.group, input.identities.groups, v["group-file"]) : userName !== undefined ? (primaryGroups(v.passwd).get(userName) ?? 0) : 0;
  const flow: Flow = {
    uid,
    gid,
    to: v.to,
    protocol: protocol satisfies FlowProtocol,
    ...(port !== undefined ? { port } : {}),
    ...(v.cgroup !== undefined ? { cgroup: v.cgroup } : {}),
    ...(v["original-to"] !== undefined ? { original: { to: v["original-to"], ...(withPorts ? { port: portFlag("--original-port", v["original-port"]) ?? port } : {}) } } : {}),
  };
  const problem = flowProblem(flow);
  if (problem) throw new InputError(problem);
  const e = evaluate(input, flow);
  if (v.output === "json") out(JSON.stringify({ verdict: e.verdict, decidedBy: e.decidedBy, audit: e.audit, path: e.path }, null, 2));
  else for (const l of explainText(e, describeFlow(flow, userName))) out(l);
  return 0;
}
