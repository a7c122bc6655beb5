#!/usr/bin/env node
// Entry point of the `nftegress` CLI: dispatches to one command; errors are one line.
import { dispatch, type Command } from "../cli/exit.js";

const HELP = `Usage: nftegress COMMAND [options]

Host egress policy with nftables, for Kubernetes nodes and plain Linux servers.

Commands:
  render      print the nft script for policy files (nothing applied)
  check       validate policy files, then nft --check the script
  explain     say which guard entry, policy and rule decide one flow (offline)
  apply       apply policy files once, atomically
  status      show applied policies, counters and top denied destinations
  cleanup     remove table inet nftegress
  suggest     turn what a policy (would have) denied into Allow rules to review
  top         the cluster-wide view: policies by denials, from their statuses
  agent       run the node agent (in a cluster, or --standalone on a plain server)
  controller  run the controller (policy status, Events; leader-elected)

Run 'nftegress COMMAND --help' for a command's options.`;

// Loaded on use: the Kubernetes client alone costs about 0.3 s and 60 MiB, which a one-shot
// `apply` or the standalone agent on a plain server should not pay.
const COMMANDS: Record<string, () => Promise<Command>> = {
  render: async () => (await import("../cli/commands.js")).renderCommand,
  check: async () => (await import("../cli/commands.js")).checkCommand,
  explain: async () => (await import("../cli/explain.js")).explainCommand,
  apply: async () => (await import("../cli/commands.js")).applyCommand,
  status: async () => (await import("../cli/commands.js")).statusCommand,
  cleanup: async () => (await import("../cli/commands.js")).cleanupCommand,
  agent: async () => (await import("../cli/agent.js")).agentCommand,
  controller: async () => (await import("../cli/controller.js")).controllerCommand,
  suggest: async () => (await import("../cli/suggest.js")).suggestCommand,
  top: async () => (await import("../cli/top.js")).topCommand,
};

dispatch("nftegress", HELP, COMMANDS, process.argv.slice(2));
