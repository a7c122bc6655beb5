// The one-shot CLI commands: render, check, apply, status, cleanup.
import { FilePolicyNames } from "../host/policynames.js";
import { FqdnResolver } from "../host/fqdns.js";
import { readIdentities, userNames } from "../host/identities.js";
import { fqdnNames, timeNames } from "../agent/inputs.js";
import { formatGuardEntry, guardEntries } from "../policy/guard.js";
import { readStatus, type KernelStatus } from "../agent/counters.js";
import { Syncer, type SyncOutcome } from "../agent/syncer.js";
import { FileTableLock, lockTimeoutMs } from "../host/lock.js";
import { RealNftExecutor } from "../nft/executor.js";
import { NftNotFoundError } from "../nft/errors.js";
import { planFull } from "../nft/plan.js";
import { elementCount } from "../nft/ruleset.js";
import { FAMILY, TABLE, render } from "../nft/transaction.js";
import { loadDocuments } from "../source/documents.js";
import { HOST_HELP, HOST_OPTIONS, UsageError, hostOptions, parse, parseLabels } from "./args.js";
import { table } from "./table.js";
import { build, buildStrict, defaultNodeName, type BuildOptions } from "../agent/build.js";

type Out = (line: string) => void;

const FILE_OPTIONS = { file: { type: "string", short: "f" }, ...HOST_OPTIONS } as const;

const LOCK_OPTIONS = { "state-dir": { type: "string", default: "/run/nftegress" }, "lock-timeout": { type: "string", default: "30" } } as const;

const LOCK_HELP = `  --lock-timeout SEC       how long to wait while another apply, cleanup or agent holds the
                           table's lock (<state-dir>/host/lock or netns-NAME/lock), then exit 1
                           naming it (default 30; 0: do not wait)`;

/** Takes the table's lock for a one-shot command; the process's exit releases it in any case. */
async function lockTable(v: { "state-dir": string; "lock-timeout": string; netns?: string | undefined }, help: string): Promise<FileTableLock> {
  const timeoutMs = lockTimeoutMs(v["lock-timeout"]);
  if (timeoutMs === null) throw new UsageError(`--lock-timeout must be a number of seconds (0: do not wait)\n\n${help}`);
  const lock = new FileTableLock(v["state-dir"], v.netns);
  await lock.acquire({ timeoutMs });
  return lock;
}

function buildOptions(v: Parameters<typeof hostOptions>[0] & { "node-name"?: string | undefined; "node-labels": string }): BuildOptions {
  return {
    ...hostOptions(v),
    nodeName: defaultNodeName(v["node-name"]),
    nodeLabels: parseLabels(v["node-labels"]),
  };
}

function needFile(file: string | undefined, help: string): string {
  if (!file) throw new UsageError(`-f FILE|DIR is required\n\n${help}`);
  return file;
}

export const RENDER_HELP = `Usage: nftegress render -f FILE|DIR [options]

Prints the nft script that apply would load for this node (nothing is applied), after a
comment block listing what the guard always allows (name, protocol, ports, destinations).
FQDNs and time-server names are not resolved offline: rules that only name FQDNs match
nothing here, and the NTP entry lists the names it would resolve.

${HOST_HELP}`;

export async function renderCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values: v } = parse(argv, FILE_OPTIONS, RENDER_HELP);
  if (v.help) return (out(RENDER_HELP), 0);
  const docs = loadDocuments(needFile(v.file, RENDER_HELP), (l) => err(`note: ${l}`));
  const result = buildStrict(docs, buildOptions(v));
  for (const p of result.policies) for (const n of p.notes) err(`note: EgressPolicy/${p.name}: ${n}`);
  const plan = planFull(result.ruleset, { chains: new Set(), sets: new Set(), counters: new Set() });
  out("# guard: always allowed before any policy: established and related flows, loopback, ICMPv6 ND/MLD, DHCP client, and");
  for (const e of guardEntries(result.guard)) out(`#   ${formatGuardEntry(e)}`);
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
  --state-dir DIR          this host's nftegress state directory: the table's lock
                           (default /run/nftegress)
${LOCK_HELP}
${HOST_HELP}`;

export async function applyCommand(argv: string[], out: Out, err: Out): Promise<number> {
  const { values: v } = parse(argv, { ...FILE_OPTIONS, netns: { type: "string" }, ...LOCK_OPTIONS }, APPLY_HELP);
  if (v.help) return (out(APPLY_HELP), 0);
  const docs = loadDocuments(needFile(v.file, APPLY_HELP), (l) => err(`note: ${l}`));
  const opts = buildOptions(v);
  // Validate fully (including users on this node) before resolving names or touching nft.
  let result = buildStrict(docs, opts);
  const names = [...new Set([...fqdnNames(docs.policies, docs.addressSets), ...timeNames(opts)])];
  if (names.length) {
    // Resolve only what passed validation, then compile again with the answers.
    const resolver = new FqdnResolver();
    await resolver.refresh(names);
    result = buildStrict(docs, { ...opts, fqdns: resolver.snapshot() });
  }
  for (const p of result.policies) for (const n of p.notes) err(`note: EgressPolicy/${p.name}: ${n}`);
  // One writer per table: the read of the kernel's state, the plan and the apply all under the lock.
  const lock = await lockTable(v, APPLY_HELP);
  const nft = new RealNftExecutor({ netns: v.netns, lock });
  let outcome: SyncOutcome;
  try {
    outcome = await new Syncer(nft, new FilePolicyNames(v["state-dir"], v.netns)).sync(result.ruleset);
  } finally {
    lock.release();
  }
  const modes = result.policies.map((p) => `${p.name} (${p.mode})`).join(", ") || "none";
  out(`applied ${result.policies.length} policies to table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}: ${modes}; ${elementCount(result.ruleset)} set elements; ${outcome.durationMs.toFixed(0)} ms`);
  if (outcome.cleanupError) err(`warning: stale objects not yet removed: ${outcome.cleanupError}`);
  if (outcome.namesError) err(`warning: the policies' names were not saved (status shows their ids): ${outcome.namesError}`);
  return 0;
}

export const STATUS_HELP = `Usage: nftegress status [--netns NAME] [--output json] [--passwd FILE] [--state-dir DIR]

Shows what the kernel enforces: applied policies with mode and generation, denied and
would-deny packets and bytes, top denied destinations and denials by user.

  --state-dir DIR          where apply and the agents keep the policies' names by id
                           (default /run/nftegress); a policy not named there is shown by
                           its id`;


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
    { netns: { type: "string" }, output: { type: "string", short: "o", default: "text" }, passwd: { type: "string", default: "/etc/passwd" }, "state-dir": { type: "string", default: "/run/nftegress" } },
    STATUS_HELP,
  );
  if (v.help) return (out(STATUS_HELP), 0);
  if (v.output !== "text" && v.output !== "json") throw new UsageError(`--output must be text or json, not "${v.output}"`);
  const nft = new RealNftExecutor({ netns: v.netns });
  const status = await readStatus(nft, userNames(readIdentities(v.passwd, "/dev/null")), { policyNames: new FilePolicyNames(v["state-dir"], v.netns).load() });
  if (v.output === "json") out(JSON.stringify(status, null, 2));
  else for (const l of formatStatus(status, v.netns ? ` in netns ${v.netns}` : "")) out(l);
  return 0;
}

export const CLEANUP_HELP = `Usage: nftegress cleanup [--netns NAME] [--state-dir DIR] [--lock-timeout SEC]

Deletes table inet nftegress (and with it every rule, set and counter of nftegress).
No other table is touched. Succeeds when the table does not exist.

  --state-dir DIR          where the table's lock is (default /run/nftegress)
${LOCK_HELP}`;

export async function cleanupCommand(argv: string[], out: Out): Promise<number> {
  const { values: v } = parse(argv, { netns: { type: "string" }, ...LOCK_OPTIONS }, CLEANUP_HELP);
  if (v.help) return (out(CLEANUP_HELP), 0);
  const lock = await lockTable(v, CLEANUP_HELP);
  const nft = new RealNftExecutor({ netns: v.netns, lock });
  try {
    await nft.apply(`delete table ${FAMILY} ${TABLE}\n`);
    out(`deleted table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}`);
  } catch (e) {
    if (!(e instanceof NftNotFoundError)) throw e;
    out(`no table ${FAMILY} ${TABLE}${v.netns ? ` in netns ${v.netns}` : ""}: nothing to do`);
  } finally {
    lock.release();
  }
  return 0;
}

export { build };
