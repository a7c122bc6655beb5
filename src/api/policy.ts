// EgressPolicy: the schema is the single source of truth for the TypeScript type and the CRD.
import { z } from "zod";
import { parseCidr } from "../net/cidr.js";
import { Condition, DnsLabel, DnsSubdomain, LabelSelector, ObjectMeta, SAFE_TEXT } from "./common.js";

export const Protocol = z.enum(["TCP", "UDP", "SCTP", "ICMP", "ICMPv6"]);
export type Protocol = z.infer<typeof Protocol>;

export const PORT_PROTOCOLS: readonly Protocol[] = ["TCP", "UDP", "SCTP"];

export const Port = z
  .strictObject({
    protocol: Protocol,
    port: z.number().int().min(1).max(65535).optional(),
    endPort: z.number().int().min(1).max(65535).optional(),
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
      { rule: "!has(self.endPort) || (has(self.port) && self.endPort >= self.port)", message: "endPort must be >= port (and needs port)" },
      { rule: "!has(self.port) || self.protocol in ['TCP', 'UDP', 'SCTP']", message: "port is only valid with protocol TCP, UDP or SCTP" },
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

export const Destinations = z.strictObject({
  cidrs: z.array(CidrText).max(1000).optional(),
  addressSets: z.array(DnsSubdomain).max(32).optional(),
  fqdns: z.array(Fqdn).max(64).optional(),
});

export const Rule = z.strictObject({
  name: DnsLabel,
  action: z.enum(["Allow", "Deny"]),
  to: Destinations.optional(),
  ports: z.array(Port).max(64).optional(),
  users: z.array(Principal).max(64).optional(),
  groups: z.array(Principal).max(64).optional(),
  cgroups: z.array(CgroupPath).max(64).optional(),
});
export type Rule = z.infer<typeof Rule>;

export const Logging = z.strictObject({
  enabled: z.boolean().default(false),
  prefix: z
    .string()
    .max(60)
    .regex(SAFE_TEXT, "may only contain letters, digits, space and . _ : / -")
    .default("NFT-EGRESS-DROP"),
  rate: z
    .string()
    .regex(/^[1-9][0-9]{0,5}\/(second|minute|hour|day)$/, "must look like 10/second (per second, minute, hour or day)")
    .default("10/second"),
  group: z.number().int().min(0).max(65535).optional(),
});

export const EgressPolicySpec = z.strictObject({
  nodeSelector: LabelSelector.default({}),
  priority: z.number().int().min(0).max(1000000).default(1000),
  mode: z.enum(["Audit", "Enforce"]).default("Audit"),
  defaultAction: z.enum(["Deny", "Allow"]).default("Deny"),
  denyResponse: z.enum(["Drop", "Reject"]).default("Drop"),
  logging: Logging.default({ enabled: false, prefix: "NFT-EGRESS-DROP", rate: "10/second" }),
  rules: z
    .array(Rule)
    .max(100)
    .default([])
    .superRefine((rules, ctx) => {
      const seen = new Set<string>();
      rules.forEach((r, i) => {
        if (seen.has(r.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate rule name "${r.name}": rule names must be unique` });
        seen.add(r.name);
      });
    })
    .meta({
      "x-kubernetes-validations": [
        { rule: "self.all(r, self.exists_one(s, s.name == r.name))", message: "rule names must be unique" },
      ],
    }),
});
export type EgressPolicySpec = z.infer<typeof EgressPolicySpec>;

export const TopDestination = z.object({
  address: z.string(),
  port: z.number().int().optional(),
  protocol: z.string(),
  packets: z.number().int(),
  nodes: z.number().int().optional(),
});

export const UserDenials = z.object({
  uid: z.number().int(),
  user: z.string().optional(),
  packets: z.number().int(),
});

export const EgressPolicyStatus = z.object({
  observedGeneration: z.number().int().optional().meta({ default: 0 }),
  conditions: z.array(Condition).optional(),
  nodes: z
    .object({
      selected: z.number().int(),
      applied: z.number().int(),
      failed: z.number().int(),
      pending: z.number().int(),
      /** Selected nodes whose agent is suspended (break-glass): neither applied, failed nor pending. */
      suspended: z.number().int().optional(),
    })
    .optional(),
  failedNodes: z.array(z.object({ node: z.string(), message: z.string() })).optional(),
  denied: z.object({ packets: z.number().int(), bytes: z.number().int() }).optional(),
  wouldDeny: z.object({ packets: z.number().int(), bytes: z.number().int() }).optional(),
  topDeniedDestinations: z.array(TopDestination).optional(),
  deniedByUser: z.array(UserDenials).optional(),
  lastChangeTime: z.string().optional(),
  deniedSinceLastChange: z.number().int().optional(),
  /** Bookkeeping for deniedSinceLastChange: the summed denied packets it was last brought up to date with. */
  deniedBaseline: z.number().int().optional(),
});
export type EgressPolicyStatus = z.infer<typeof EgressPolicyStatus>;

export const EgressPolicy = z.strictObject({
  apiVersion: z.literal("nftegress.io/v1alpha1"),
  kind: z.literal("EgressPolicy"),
  metadata: ObjectMeta,
  spec: EgressPolicySpec,
  // The API server defaults status to {observedGeneration: 0}, so kstatus (Flux) reads a new
  // policy as in progress until the controller has written its first status.
  status: EgressPolicyStatus.optional().meta({ default: {} }),
});
export type EgressPolicy = z.infer<typeof EgressPolicy>;
