#!/usr/bin/env node
// Entry point of the `nftegress` CLI: dispatches to one command; errors are one line.
import { ZodError } from "zod";
import { agentCommand } from "../cli/agent.js";
import { controllerCommand } from "../cli/controller.js";
import { suggestCommand } from "../cli/suggest.js";
import { topCommand } from "../cli/top.js";
import { UsageError } from "../cli/args.js";
import { applyCommand, checkCommand, cleanupCommand, renderCommand, statusCommand } from "../cli/commands.js";
import { NftError } from "../nft/errors.js";
import { InputError } from "../source/documents.js";

const HELP = `Usage: nftegress COMMAND [options]

Host egress policy with nftables, for Kubernetes nodes and plain Linux servers.

Commands:
  render      print the nft script for policy files (nothing applied)
  check       validate policy files, then nft --check the script
  apply       apply policy files once, atomically
  status      show applied policies, counters and top denied destinations
  cleanup     remove table inet nftegress
  suggest     turn what a policy (would have) denied into Allow rules to review
  top         the cluster-wide view: policies by denials, from their statuses
  agent       run the node agent (in a cluster, or --standalone on a plain server)
  controller  run the controller (policy status, Events; leader-elected)

Run 'nftegress COMMAND --help' for a command's options.`;

const out = (l: string) => process.stdout.write(`${l}\n`);
const err = (l: string) => process.stderr.write(`${l}\n`);

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "render":
      return renderCommand(rest, out, err);
    case "check":
      return checkCommand(rest, out);
    case "apply":
      return applyCommand(rest, out, err);
    case "status":
      return statusCommand(rest, out);
    case "cleanup":
      return cleanupCommand(rest, out);
    case "agent":
      return agentCommand(rest, out);
    case "controller":
      return controllerCommand(rest, out);
    case "suggest":
      return suggestCommand(rest, out);
    case "top":
      return topCommand(rest, out);
    case undefined:
    case "help":
    case "--help":
    case "-h":
      out(HELP);
      return cmd === undefined ? 2 : 0;
    default:
      err(`nftegress: unknown command "${cmd}"\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      err(`nftegress: ${e.message}`);
      process.exitCode = 2;
      return;
    }
    const msg = e instanceof InputError || e instanceof NftError ? e.message : e instanceof ZodError ? e.issues[0]?.message ?? "invalid input" : e instanceof Error ? e.message : String(e);
    err(`nftegress: ${msg.split("\n")[0]}`);
    process.exitCode = 1;
  },
);
