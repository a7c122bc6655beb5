// The one-shot CLI commands: render, check, apply, status, cleanup.
import { FqdnResolver } from "../host/fqdns.js";
import { readIdentities, userNames } from "../host/identities.js";
import { fqdnNames } from "../agent/inputs.js";
import { readStatus, type KernelStatus } from "../agent/counters.js";
import { Syncer } from "../agent/syncer.js";
import { FileAllowedStore } from "../host/state.js";
import { RealNftExecutor } from "../nft/executor.js";
import { NftNotFoundError } from "../nft/errors.js";
import { planFull } from "../nft/plan.js";
import { elementCount } from "../nft/ruleset.js";
import { FAMILY, TABLE, render } from "../nft/transaction.js";
import { loadDocuments } from "../source/documents.js";
import { HOST_HELP, HOST_OPTIONS, UsageError, parse, parseLabels } from "./args.js";
import { table } from "./table.js";
import { build, buildStrict, defaultNodeName, type BuildOptions } from "../agent/build.js";

type Out = (line: string) => void;

const FILE_OPTIONS = { file: { type: "string", short: "f" }, ...HOST_OPTIONS } as const;

function buildOptions(v: { passwd: string; group: string; "resolv-conf": string; failsafe?: string | undefined; "node-name"?: string | undefined; "node-labels": string }): BuildOptions {
  return {
    passwd: v.passwd,
    group: v.group,
    resolvConf: v["resolv-conf"],
    failsafeFile: v.failsafe,
    nodeName: defaultNodeName(v["node-name"]),
    nodeLabels: parseLabels(v["node-labels"]),
  };
}

function needFile(file: string | undefined, help: string): string {
  if (!file) throw new UsageError(`-f FILE|DIR is required\n\n${help}`);
  return file;
}

export const RENDER_HELP = `Usage: nftegress render -f FILE|DIR [options]

Prints the nft script that apply would load for this node (nothing is applied).
FQDNs are not resolved offline: rules that only name FQDNs match nothing here.

${HOST_HELP}`;

export async function renderCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values: v } = parse(argv, FILE_OPTIONS, RENDER_HELP);
  if (v.help) return (out(RENDER_HELP), 0);
  const docs = loadDocuments(needFile(v.file, RENDER_HELP), (l) => err(`note: ${l}`));
  const result = buildStrict(docs, buildOptions(v));
  for (const p of result.policies) for (const n of p.notes) err(`note: EgressPolicy/${p.name}: ${n}`);
  const plan = planFull(result.ruleset, { chains: new Set(), sets: new Set(), counters: new Set() });
  out(render(plan.main).trimEnd());
  return 0;
}

export const CHECK_HELP = `Usage: nftegress check -f FILE|DIR [--netns NAME] [options]

Validates the files (schema, then this node's users, groups and address sets), then asks
the kernel to check the generated script with nft --check. Nothing is applied.

  --netns NAME             run nft --check inside this network namespace
${HOST_HELP}`;

export async function checkCommand(argv: string[], out: Out, err: Out = out): Promise<number> {
  const { values: v } = parse(argv, { ...FILE_OPTIONS, netns: { type: "string" } }, CHECK_HELP);
  if (v.help) return (out(CHECK_HELP), 0);
  const file = needFile(v.file, CHECK_HELP);
  const docs = loadDocuments(file, (l) => err(`note: ${l}`));
  const result = buildStrict(docs, buildOptions(v));
  const plan = planFull(result.ruleset, { chains: new Set(), sets: new Set(), counters: new Set() });
  await new RealNftExecutor({ netns: v.netns }).check(render(plan.main));
  out(`${file}: ok: ${docs.policies.length} policies, ${docs.addressSets.length} address sets, ${result.policies.length} selecting this node, ${elementCount(result.ruleset)} set elements`);
  return 0;
}

export const APPLY_HELP = `Usage: nftegress apply -f FILE|DIR [--netns NAME] [options]

Validates the files and applies them once, as one atomic nft transaction, to table
inet nftegress. On any error nothing is applied and the previous ruleset stays.

  --netns NAME             apply inside this network namespace
  --state-dir DIR          kept between runs: what the ruleset allows, so that flows to
                           destinations a later apply removes are cut (default /run/nftegress)
${HOST_HELP}`;

export async function applyCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values: v } = parse(argv, { ...FILE_OPTIONS, netns: { type: "string" }, "state-dir": { type: "string", default: "/run/nftegress" } }, APPLY_HELP);
  if (v.help) return (out(APPLY_HELP), 0);
  const docs = loadDocuments(needFile(v.file, APPLY_HELP), (l) => err(`note: ${l}`));
  const opts = buildOptions(v);
  // Validate fully (including users on this node) before resolving names or touching nft.
  let result = buildStrict(docs, opts);
  const names = fqdnNames(docs.policies, docs.addressSets);
  if (names.length) {
    // Resolve only what passed validation, then compile again with the answers.
    const resolver = new FqdnResolver();
    await resolver.refresh(names);
    result = buildStrict(docs, { ...opts, fqdns: resolver.snapshot() });
  }
  for (const p of result.policies) for (const n of p.notes) err(`note: EgressPolicy/${p.name}: ${n}`);
  const nft = new RealNftExecutor({ netns: v.netns });
  const outcome = await new Syncer(nft, new FileAllowedStore(v["state-dir"], v.netns)).sync(result.ruleset, result.policies);
  const modes = result.policies.map((p) => `${p.name} (${p.mode})`).join(", ") || "none";
  out(`applied ${result.policies.length} policies to table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}: ${modes}; ${elementCount(result.ruleset)} set elements; ${outcome.durationMs.toFixed(0)} ms`);
  if (outcome.cleanupError) err(`warning: stale objects not yet removed: ${outcome.cleanupError}`);
  return 0;
}

export const STATUS_HELP = `Usage: nftegress status [--netns NAME] [--output json] [--passwd FILE]

Shows what the kernel enforces: applied policies with mode and generation, denied and
would-deny packets and bytes, top denied destinations and denials by user.`;


export function formatStatus(s: KernelStatus, where: string): string[] {
  if (!s.present) return [`no table ${FAMILY} ${TABLE}${where}: nothing is enforced by nftegress`];
  if (s.dormant) return [`table ${FAMILY} ${TABLE}${where} is dormant (suspended): nothing of it is enforced; its rules and counters are kept`];
  const lines = [`table ${FAMILY} ${TABLE}${where}: ${s.policies.length} policies`, ""];
  lines.push(
    ...table([
      ["POLICY", "MODE", "PRIORITY", "GENERATION", "REVISION", "DENIED-PKTS", "DENIED-BYTES", "WOULD-DENY-PKTS", "WOULD-DENY-BYTES"],
      ...s.policies.map((p) => [p.name, p.mode, String(p.priority), String(p.generation), p.revision, String(p.denied.packets), String(p.denied.bytes), String(p.wouldDeny.packets), String(p.wouldDeny.bytes)]),
    ]),
  );
  for (const p of s.policies) {
    if (p.topDeniedDestinations.length) {
      lines.push("", `top ${p.mode === "Audit" ? "would-deny" : "denied"} destinations of ${p.name}:`);
      lines.push(...table([["ADDRESS", "PORT", "PROTOCOL", "PACKETS"], ...p.topDeniedDestinations.map((d) => [d.address, d.port === undefined ? "-" : String(d.port), d.protocol, String(d.packets)])]).map((l) => `  ${l}`));
    }
    if (p.deniedByUser.length) {
      lines.push("", `${p.mode === "Audit" ? "would-deny" : "denials"} by user of ${p.name}:`);
      lines.push(...table([["UID", "USER", "PACKETS"], ...p.deniedByUser.map((u) => [String(u.uid), u.user ?? "-", String(u.packets)])]).map((l) => `  ${l}`));
    }
  }
  return lines;
}

export async function statusCommand(argv: string[], out: Out): Promise<number> {
  const { values: v } = parse(
    argv,
    { netns: { type: "string" }, output: { type: "string", short: "o", default: "text" }, passwd: { type: "string", default: "/etc/passwd" } },
    STATUS_HELP,
  );
  if (v.help) return (out(STATUS_HELP), 0);
  if (v.output !== "text" && v.output !== "json") throw new UsageError(`--output must be text or json, not "${v.output}"`);
  const nft = new RealNftExecutor({ netns: v.netns });
  const status = await readStatus(nft, userNames(readIdentities(v.passwd, "/dev/null")));
  if (v.output === "json") out(JSON.stringify(status, null, 2));
  else for (const l of formatStatus(status, v.netns ? ` in netns ${v.netns}` : "")) out(l);
  return 0;
}

export const CLEANUP_HELP = `Usage: nftegress cleanup [--netns NAME]

Deletes table inet nftegress (and with it every rule, set and counter of nftegress).
No other table is touched. Succeeds when the table does not exist.`;

export async function cleanupCommand(argv: string[], out: Out): Promise<number> {
  const { values: v } = parse(argv, { netns: { type: "string" } }, CLEANUP_HELP);
  if (v.help) return (out(CLEANUP_HELP), 0);
  const nft = new RealNftExecutor({ netns: v.netns });
  try {
    await nft.apply(`delete table ${FAMILY} ${TABLE}\n`);
    out(`deleted table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}`);
  } catch (e) {
    if (!(e instanceof NftNotFoundError)) throw e;
    out(`no table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}: nothing to do`);
  }
  return 0;
}

export { build };
