// Small helpers shared by the CLI commands: flag parsing and the one-line error contract.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { isCidrText } from "../api/policy.js";
import { markField } from "../nft/recheck.js";

export class UsageError extends Error {
  override name = "UsageError";
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

export const HOST_OPTIONS = {
  passwd: { type: "string", default: "/etc/passwd" },
  group: { type: "string", default: "/etc/group" },
  "resolv-conf": { type: "string", default: "/etc/resolv.conf" },
  failsafe: { type: "string" },
  "time-root": { type: "string", default: "/" },
  "node-addresses": { type: "string" },
  "bgp-peers": { type: "string" },
  "revocation-mark": { type: "string" },
  "node-name": { type: "string" },
  "node-labels": { type: "string", default: "" },
} as const satisfies Options;

export const HOST_HELP = `  --node-name NAME         node name for nodeSelector matching (default: hostname)
  --node-labels k=v,...    node labels for nodeSelector matching
  --passwd FILE            passwd file for user names (default /etc/passwd)
  --group FILE             group file for group names (default /etc/group)
  --resolv-conf FILE       resolvers for the DNS failsafe (default /etc/resolv.conf)
  --failsafe FILE          YAML list replacing the default failsafe list: entries of name,
                           protocol (TCP|UDP), ports, and cidrs and/or "to: nodes"; an entry
                           naming no destination is refused
  --time-root DIR          read the host's time servers (NTP failsafe) under DIR: chrony
                           (/etc/chrony/chrony.conf, /etc/chrony.conf and their include,
                           confdir, sourcedir), systemd-timesyncd (/etc/systemd/timesyncd.conf
                           and .d: NTP=, FallbackNTP=), ntpd/ntpsec (/etc/ntp.conf,
                           /etc/ntpsec/ntp.conf); names are resolved (default /)
  --node-addresses LIST|FILE
                           node addresses for the overlay failsafe (VXLAN, Geneve, WireGuard:
                           "to: nodes"): comma-separated addresses or prefixes, or a file of
                           them, one per line; added to the Nodes' addresses in a cluster.
                           Default: none (standalone), so no overlay traffic is always allowed
  --bgp-peers LIST         comma-separated BGP peer addresses or prefixes (TCP 179); default:
                           none, and no BGP entry
  --revocation-mark MASK   re-check established flows with the conntrack mark bits of MASK
                           (8 to 24 contiguous bits, e.g. 0x00ff0000) instead of the set
                           "flows": faster per packet; the bits must be free of every other
                           tool on the host (README, Revocation). Default: the set`;

/** --bgp-peers: addresses or prefixes, checked here so a typo fails the command at once. */
export function parseCidrList(flag: string, text: string | undefined): string[] {
  if (!text) return [];
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  for (const i of items) if (!isCidrText(i)) throw new UsageError(`${flag}: "${String(i).slice(0, 60)}" is not an address or prefix`);
  return items;
}

/** The host options shared by render, check, apply and agent, as BuildOptions fields. */
/** --revocation-mark: a mask of 8 to 24 contiguous bits, hex or decimal. */
export function parseRevocationMark(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = /^(0x[0-9a-f]{1,8}|[0-9]{1,10})$/i.test(text.trim()) ? Number(text.trim()) : NaN;
  if (!markField(n)) throw new UsageError(`--revocation-mark: "${text.slice(0, 20)}" is not a mask of 8 to 24 contiguous bits of the 32-bit conntrack mark (for instance 0x00ff0000)`);
  return n;
}

export function hostOptions(v: { passwd: string; group: string; "resolv-conf": string; failsafe?: string | undefined; "time-root": string; "node-addresses"?: string | undefined; "bgp-peers"?: string | undefined; "revocation-mark"?: string | undefined }) {
  const mark = parseRevocationMark(v["revocation-mark"]);
  return {
    ...(mark !== undefined ? { revocationMark: mark } : {}),
    passwd: v.passwd,
    group: v.group,
    resolvConf: v["resolv-conf"],
    failsafeFile: v.failsafe,
    timeRoot: v["time-root"],
    nodeAddresses: v["node-addresses"],
    bgpPeers: parseCidrList("--bgp-peers", v["bgp-peers"]),
  };
}

export function parse<O extends Options>(argv: string[], options: O, help: string, positionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError(`${e instanceof Error ? e.message : String(e)}\n\n${help}`);
  }
}

export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf("=");
    if (i <= 0) throw new UsageError(`--node-labels: "${part}" is not key=value`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}
