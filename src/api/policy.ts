// EgressPolicy: the schema is the single source of truth for the TypeScript type and the CRD.
import { z } from "zod";
import { parseCidr } from "../net/cidr.js";
import { Condition, DnsLabel, DnsSubdomain, LabelSelector, ObjectMeta, SAFE_TEXT } from "./common.js";

export const Protocol = z.enum(["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"]).describe("Protocol matched. TCP, UDP and SCTP may name a port or range; ICMP and ICMPv6 match every type.");
export type Protocol = z.infer<typeof Protocol>;

export const PORT_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export const Port = z
  .strictObject({
    protocol: Protocol,
    port: z.number().int().min(1).max(65535).optional().describe("Destination port (TCP, UDP or SCTP only). Absent: every port of the protocol."),
    endPort: z.number().int().min(1).max(65535).optional().describe("Last port of the range port-endPort, inclusive. Needs port, and must be >= port."),
  })
  .superRefine((p, ctx) => {
    if (p.endPort !== undefined && (p.port === undefined || p.endPort < p.port)) {
      ctx.addIssue({ code: "custom", path: ["endPort"], message: "endPort must be >= port (and needs port)" });
    }
    if (p.port !== undefined && !PORT_PROTOCOLS.includes(p.protocol)) {
      ctx.addIssue({ code: "custom", path: ["port"], message: "port is only valid with protocol TCP, UDP or SCTP" });
    }
  })
  .meta({
    "x-kubernetes-validations": [
      // fieldPath: the API server names the field the superRefine above names (as the CLI does).
      { rule: "!has(self.endPort) || (has(self.port) && self.endPort >= self.port)", message: "endPort must be >= port (and needs port)", fieldPath: ".endPort", reason: "FieldValueInvalid" },
      { rule: "!has(self.port) || self.protocol in ['TCP', 'UDP', 'SCTP']", message: "port is only valid with protocol TCP, UDP or SCTP", fieldPath: ".port", reason: "FieldValueInvalid" },
    ],
  });
export type Port = z.infer<typeof Port>;

/** Longest CIDR text accepted (a full IPv6 address with an embedded IPv4 one and /128). */
export const MAX_CIDR_TEXT = 43;

/** What CidrText accepts, as one check (for validating large lists in one loop). */
export function isCidrText(s: unknown): s is string {
  return typeof s === "string" && s.length <= MAX_CIDR_TEXT && parseCidr(s).ok;
}

export const CidrText = z
  .string()
  .max(MAX_CIDR_TEXT)
  .superRefine((s, ctx) => {
    const r = parseCidr(s);
    if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason });
  })
  .meta({
    "x-kubernetes-validations": [
      {
        rule: "isIP(self) || (isCIDR(self) && cidr(self).masked() == cidr(self))",
        message: "must be an IP address or a CIDR without host bits, e.g. 10.0.0.0/8 or 2001:db8::/32",
      },
    ],
  });

export const Fqdn = z
  .string()
  .max(253)
  .regex(/^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\.?$/, "must be a DNS name");

/** Largest uid/gid: 2^32-1 is (uid_t)-1, "no id", and nft refuses anything above it. */
export const MAX_ID = 4294967294;

/** A user or group: a name resolved on the node, or a numeric id (0-MAX_ID) given as digits. */
export const Principal = z
  .string()
  .min(1)
  .max(32)
  .regex(/^([0-9]{1,10}|[a-zA-Z_][a-zA-Z0-9_.-]*\$?)$/, "must be a user/group name or a numeric id")
  .refine((s) => !/^[0-9]+$/.test(s) || Number(s) <= MAX_ID, `a numeric id must be 0-${MAX_ID}`)
  .meta({
    "x-kubernetes-validations": [{ rule: `!self.matches('^[0-9]+$') || int(self) <= ${MAX_ID}`, message: `a numeric id must be 0-${MAX_ID}` }],
  });

export const CgroupPath = z
  .string()
  .min(1)
  .max(200)
  .regex(/^\/?[A-Za-z0-9_.@:-]+(\/[A-Za-z0-9_.@:-]+)*$/, "must be a cgroup v2 path such as system.slice/apt-daily.service")
  .refine((s) => !s.split("/").includes(".."), "must not contain '..'");

export const Destinations = z
  .strictObject({
    cidrs: z.array(CidrText).max(1000).optional().describe("IPv4 and IPv6 addresses or CIDRs without host bits, e.g. 10.0.0.0/8, 198.51.100.40, 2001:db8::/32."),
    addressSets: z.array(DnsSubdomain).max(32).optional().describe("Names of EgressAddressSets (their nftegress.io/set label, else their name) whose addresses this rule matches."),
    fqdns: z.array(Fqdn).max(64).optional().describe("DNS names resolved by the agent on each node, honouring TTLs. A rule whose destinations resolve to nothing matches nothing."),
  })
  .describe("Destinations the rule matches; any entry of any list may match. Absent: every destination.");

export const Rule = z.strictObject({
  name: DnsLabel.describe("Rule name, unique within the policy; named in counters, logs and status."),
  action: z.enum(["Allow", "Deny"]).describe("What a match does: Allow accepts the traffic; Deny denies it (in Audit: counts it as would-deny)."),
  to: Destinations.optional(),
  ports: z.array(Port).max(64).optional().describe("Protocols and ports matched; any entry may match. Absent: every protocol and port."),
  users: z.array(Principal).max(64).optional().describe("Sending socket's owner: user names from the node's /etc/passwd, or numeric uids. Absent: any user."),
  groups: z.array(Principal).max(64).optional().describe("Sending socket's group: group names from the node's /etc/group, or numeric gids. Absent: any group."),
  cgroups: z.array(CgroupPath).max(64).optional().describe("cgroup v2 paths of the sending process, e.g. system.slice/apt-daily.service; a cgroup that does not exist on the node matches nothing. Absent: any cgroup."),
});
export type Rule = z.infer<typeof Rule>;

export const Logging = z.strictObject({
  enabled: z.boolean().default(false).describe("Log denied (and, in Audit, would-deny) packets to the kernel log or an NFLOG group."),
  prefix: z
    .string()
    .max(60)
    .regex(SAFE_TEXT, "may only contain letters, digits, space and . _ : / -")
    .default("NFT-EGRESS-DROP")
    .describe("Log prefix of each logged packet."),
  rate: z
    .string()
    .regex(/^[1-9][0-9]{0,5}\/(second|minute|hour|day)$/, "must look like 10/second (per second, minute, hour or day)")
    .default("10/second")
    .describe("Most packets logged per interval, e.g. 10/second (per second, minute, hour or day)."),
  group: z.number().int().min(0).max(65535).optional().describe("NFLOG group to log to (e.g. for ulogd). Absent: the kernel log, level warn."),
});

/**
 * The message for a rule name used by rules[first] and again by rules[second] (the path is
 * spec.rules); DUPLICATE_RULE_NAME_CEL is the same text in CEL, for the first such second.
 */
export function duplicateRuleName(name: string, first: number, second: number): string {
  return `rule name "${name}" is used by rules[${first}] and rules[${second}]`;
}

/** At most this many rules in a policy. */
const MAX_RULES = 100;

// For each rule whose name an earlier rule has, the message naming the first such earlier
// rule; then the first of those messages. The API server's cost estimate takes string(int) as
// unbounded (and indexOf over a mapped list too), so the indexes are looked up in a list
// of their texts, and found by two-variable comprehensions.
const INDEX_TEXT = `[${Array.from({ length: MAX_RULES }, (_, i) => `'${i}'`).join(",")}]`;
const DUPLICATE_RULE_NAME_CEL = [
  "self.transformList(i, r, self.exists(k, s, k < i && s.name == r.name),",
  ` 'rule name "' + r.name + '" is used by rules[' + ${INDEX_TEXT}[self.transformList(k, s, k < i && s.name == r.name, k)[0]] + '] and rules[' + ${INDEX_TEXT}[i] + ']')[0]`,
].join("");

export const EgressPolicySpec = z.strictObject({
  nodeSelector: LabelSelector.default({}).describe("Nodes this policy applies to, a Kubernetes label selector; {} selects every node."),
  priority: z.number().int().min(0).max(1000000).default(1000).describe("Order among the policies of a node: lower runs first; ties broken by name."),
  mode: z.enum(["Audit", "Enforce"]).default("Audit").describe("Audit counts, records and logs what the policy would deny and never changes a verdict; Enforce denies it."),
  defaultAction: z.enum(["Deny", "Allow"]).default("Deny").describe("Deny: traffic that no rule of any policy matched is denied when this policy is in Enforce; in Audit, traffic none of this policy's rules matched is counted as would-deny. Allow: neither."),
  denyResponse: z.enum(["Drop", "Reject"]).default("Drop").describe("How denied packets are refused: Drop silently, or Reject (TCP reset, else ICMP administratively prohibited) so clients fail at once."),
  logging: Logging.default({ enabled: false, prefix: "NFT-EGRESS-DROP", rate: "10/second" }).describe("Logging of denied and would-deny packets."),
  rules: z
    .array(Rule)
    .max(MAX_RULES)
    .default([])
    .superRefine((rules, ctx) => {
      const first = new Map<string, number>();
      rules.forEach((r, i) => {
        const at = first.get(r.name);
        if (at !== undefined) ctx.addIssue({ code: "custom", path: [], message: duplicateRuleName(r.name, at, i) });
        else first.set(r.name, i);
      });
    })
    // An atomic list, never a list map keyed by name: rules are an ordered first-match list,
    // and server-side apply would merge two field managers' rules by name into an order
    // nobody wrote. So the API server, like the check above, names spec.rules itself; its
    // messageExpression computes the same text as duplicateRuleName for the first duplicate.
    .meta({
      "x-kubernetes-list-type": "atomic",
      "x-kubernetes-validations": [
        {
          rule: "self.all(r, self.exists_one(s, s.name == r.name))",
          message: "rule names must be unique",
          messageExpression: DUPLICATE_RULE_NAME_CEL,
        },
      ],
    })
    .describe("Rules in order: the first matching rule decides. Rule names are unique."),
});
export type EgressPolicySpec = z.infer<typeof EgressPolicySpec>;

export const TopDestination = z.object({
  address: z.string().describe("Destination address."),
  port: z.number().int().optional().describe("Destination port; absent for protocols without ports."),
  protocol: z.string().describe("Protocol, e.g. tcp, udp, icmp."),
  packets: z.number().int().describe("Packets denied (in Audit: that would have been denied) to this destination."),
  nodes: z.number().int().optional().describe("How many nodes saw this destination."),
});

export const UserDenials = z.object({
  uid: z.number().int().describe("Sending socket's uid."),
  user: z.string().optional().describe("User name of the uid on the node, when known."),
  packets: z.number().int().describe("Packets denied (in Audit: that would have been denied) for this uid."),
});

const Counter = (what: string) =>
  z
    .object({ packets: z.number().int().describe(`Packets ${what}.`), bytes: z.number().int().describe(`Bytes ${what}.`) })
    .describe(`Packets and bytes ${what}, summed over the policy's nodes.`);

export const EgressPolicyStatus = z
  .object({
    observedGeneration: z.number().int().optional().meta({ default: 0 }).describe("The generation of the spec this status describes; 0 until the controller first wrote it."),
    conditions: z.array(Condition).optional().describe("kstatus conditions: Ready, Reconciling and Stalled."),
    nodes: z
      .object({
        selected: z.number().int().describe("Nodes the nodeSelector matches."),
        applied: z.number().int().describe("Selected nodes that applied the current generation."),
        failed: z.number().int().describe("Selected nodes that failed to apply the current generation (or rolled it back); see failedNodes."),
        pending: z.number().int().describe("Selected nodes that have not reported the current generation yet."),
        /** Selected nodes whose agent is suspended (break-glass): neither applied, failed nor pending. */
        suspended: z.number().int().optional().describe("Selected nodes whose agent is suspended (break-glass): neither applied, failed nor pending."),
      })
      .optional()
      .describe("Node counts for the current generation."),
    failedNodes: z
      .array(z.object({ node: z.string().describe("Node name."), message: z.string().describe("Why the node failed, as its agent reported.") }))
      .optional()
      .describe("The nodes that failed the current generation, with their messages."),
    denied: Counter("denied").optional(),
    wouldDeny: Counter("that would have been denied (Audit)").optional(),
    topDeniedDestinations: z.array(TopDestination).optional().describe("Most denied (in Audit: would-deny) destinations, merged top 10 over the nodes."),
    deniedByUser: z.array(UserDenials).optional().describe("Denied (in Audit: would-deny) packets by sending uid, merged over the nodes."),
    lastChangeTime: z.string().optional().describe("When the controller first saw the current generation (RFC 3339)."),
    deniedSinceLastChange: z.number().int().optional().describe("Packets denied since lastChangeTime."),
    /** Bookkeeping for deniedSinceLastChange: the summed denied packets it was last brought up to date with. */
    deniedBaseline: z.number().int().optional().describe("Bookkeeping for deniedSinceLastChange: the summed denied packets it was last brought up to date with."),
  })
  .describe("Written by the controller from the nodes' NodeEgressReports.");
export type EgressPolicyStatus = z.infer<typeof EgressPolicyStatus>;

export const EgressPolicy = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("EgressPolicy"),
  metadata: ObjectMeta,
  spec: EgressPolicySpec.describe("Which nodes the policy selects, its order and mode, and its rules."),
  // The API server defaults status to {observedGeneration: 0}, so kstatus (Flux) reads a new
  // policy as in progress until the controller has written its first status.
  status: EgressPolicyStatus.optional().meta({ default: {} }).describe("Written by the controller from the nodes' NodeEgressReports."),
});
export type EgressPolicy = z.infer<typeof EgressPolicy>;
