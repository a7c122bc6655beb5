#!/usr/bin/env node
// `kubectl nftegress COMMAND`: the cluster commands of the CLI as a kubectl plugin (kubectl runs
// the executable kubectl-nftegress found on PATH, krew's convention, with the arguments after
// "nftegress"). Reads the kubeconfig like kubectl: --kubeconfig, $KUBECONFIG, --context, -n.
import { dispatch, type Command } from "../cli/exit.js";

const HELP = `Usage: kubectl nftegress COMMAND [options]

The cluster view of nftegress host egress policy, as a kubectl plugin.

Commands:
  top         every policy by denials, with mode, node counts and most denied destination
  suggest     turn what a policy (would have) denied into Allow rules to review
  explain     say which policy and rule decide one flow from a node (explain --node NAME)

Options of every command: --kubeconfig FILE, --context NAME, -n/--namespace NS (as kubectl's).
Run 'kubectl nftegress COMMAND --help' for a command's options.`;

const COMMANDS: Record<string, () => Promise<Command>> = {
  top: async () => (await import("../cli/top.js")).topCommand,
  suggest: async () => (await import("../cli/suggest.js")).suggestCommand,
  explain: async () => (await import("../cli/explain.js")).explainCommand,
};

dispatch("kubectl nftegress", HELP, COMMANDS, process.argv.slice(2));
