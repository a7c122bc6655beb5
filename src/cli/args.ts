// Small helpers shared by the CLI commands: flag parsing and the one-line error contract.
import { parseArgs, type ParseArgsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export type Options = NonNullable<ParseArgsConfig["options"]>;

export const HOST_OPTIONS = {
  passwd: { type: "string", default: "/etc/passwd" },
  group: { type: "string", default: "/etc/group" },
  "resolv-conf": { type: "string", default: "/etc/resolv.conf" },
  failsafe: { type: "string" },
  "node-name": { type: "string" },
  "node-labels": { type: "string", default: "" },
} as const satisfies Options;

export const HOST_HELP = `  --node-name NAME         node name for nodeSelector matching (default: hostname)
  --node-labels k=v,...    node labels for nodeSelector matching
  --passwd FILE            passwd file for user names (default /etc/passwd)
  --group FILE             group file for group names (default /etc/group)
  --resolv-conf FILE       resolvers for the DNS failsafe (default /etc/resolv.conf)
  --failsafe FILE          YAML list replacing the default failsafe destinations`;

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
