import { pino } from "pino";
import { StandaloneAgent } from "../agent/standalone.js";
import { FileRulesetStore } from "../host/confirmed.js";
import { FilePolicyNames } from "../host/policynames.js";
import { FileTableLock } from "../host/lock.js";
import { RealNftExecutor } from "../nft/executor.js";
import { HOST_HELP, HOST_OPTIONS, UsageError, hostOptions, parse, parseLabels } from "./args.js";
import { TimeServerAddresses } from "../host/timeservers.js";
import { defaultNodeName } from "../agent/build.js";
import { parseOwnerRef } from "../agent/ownerref.js";
import { netAdminMissing } from "../host/capabilities.js";

export const AGENT_HELP = `Usage: nftegress agent [--kubeconfig FILE] [--node-name NAME] [options]
       nftegress agent --standalone --policies DIR [options]

Runs the node agent. In a cluster it watches EgressPolicy and EgressAddressSet objects, its
own Node (labels) and the API server's endpoints, enforces the policies that select its
node, and writes its NodeEgressReport. It applies nothing before every watch has synced, and
keeps enforcing the last applied state while the API server is unreachable.

With --standalone (plain Linux servers, no Kubernetes) it applies the policy files in DIR on
start and on every change, keeps the last good state of a file that turns invalid, repairs
drift (for example after 'nft flush ruleset') within seconds, and serves /metrics, /healthz
and /readyz.

Break-glass: the node annotation nftegress.io/suspend=true (or --suspend-file in standalone
mode) makes the agent set the table dormant and report Suspended. A dormant flag set by
someone else is never undone by the agent. On SIGTERM either mode exits and leaves the last applied ruleset enforced
(unless its --owner-daemonset is being deleted); 'nftegress cleanup' removes it.

  --kubeconfig FILE        kubeconfig (default: in-cluster service account, then ~/.kube/config)
  --owner-daemonset NS/NAME
                           the agent's own DaemonSet: when it is deleted (helm uninstall),
                           the stopping agent removes its table; otherwise it stays enforced
  --report-interval SEC    most frequent counter-only report write (default 60)
  --confirm-timeout SEC    after applying a change the API server must answer within SEC, or
                           the previous ruleset is restored and the change reported
                           RolledBack (commit-confirmed; default 10, 0 disables); after a
                           restart the previous ruleset is the table found at start
  --guard-api-server BOOL  true (default): the guard always allows the API server's
                           addresses; false: only the policies decide (dangerous: a policy
                           can then cut the node off its API server, which commit-confirm
                           rolls back; for tests and clusters that want it)
  --standalone             run without Kubernetes
  --policies DIR           directory (or file) of EgressPolicy / EgressAddressSet YAML
  --suspend-file FILE      standalone break-glass: while FILE exists the table is dormant
  --netns NAME             enforce inside this network namespace
  --state-dir DIR          this host's nftegress state directory: the table's lock, held while
                           the agent runs, and the last confirmed ruleset's structure, which a
                           restarted agent restores when its first change fails commit-confirm
                           (default /run/nftegress)
  --metrics-address ADDR   listen address for /metrics (default 127.0.0.1:9469)
  --drift-interval SEC     how often the table is compared with the applied state (default 5)
${HOST_HELP}`;

export async function agentCommand(argv: string[], out: (l: string) => void): Promise<number> {
  const { values: v } = parse(
    argv,
    {
      standalone: { type: "boolean", default: false },
      kubeconfig: { type: "string" },
      "owner-daemonset": { type: "string" },
      "report-interval": { type: "string", default: "60" },
      "suspend-file": { type: "string" },
      "confirm-timeout": { type: "string", default: "10" },
      "guard-api-server": { type: "string", default: "true" },
      "state-dir": { type: "string", default: "/run/nftegress" },
      policies: { type: "string" },
      netns: { type: "string" },
      "metrics-address": { type: "string", default: "127.0.0.1:9469" },
      "drift-interval": { type: "string", default: "5" },
      ...HOST_OPTIONS,
    },
    AGENT_HELP,
  );
  if (v.help) return (out(AGENT_HELP), 0);
  const drift = Number(v["drift-interval"]);
  if (!(drift > 0)) throw new UsageError("--drift-interval must be a positive number of seconds");
  const build = {
    ...hostOptions(v),
    timeAddresses: new TimeServerAddresses(),
    nodeName: defaultNodeName(v["node-name"] ?? process.env["NODE_NAME"]),
    nodeLabels: parseLabels(v["node-labels"]),
  };
  const missing = netAdminMissing();
  if (missing) throw new Error(missing);
  const log = pino({ base: { component: "agent" } });
  // The agent owns the table: it holds the table's lock from start to exit (it waits for it first).
  const lock = new FileTableLock(v["state-dir"], v.netns);
  const nft = new RealNftExecutor({ netns: v.netns, lock });
  let agent: { start(): Promise<void>; stop(): Promise<void> };
  if (v.standalone) {
    if (!v.policies) throw new UsageError(`--policies DIR is required with --standalone\n\n${AGENT_HELP}`);
    agent = new StandaloneAgent(nft, { policies: v.policies, metricsAddress: v["metrics-address"], driftIntervalMs: drift * 1000, countersIntervalMs: 10_000, pollIntervalMs: 1000, build, suspendFile: v["suspend-file"], lock, policyNames: new FilePolicyNames(v["state-dir"], v.netns) }, log);
  } else {
    const report = Number(v["report-interval"]);
    if (!(report > 0)) throw new UsageError("--report-interval must be a positive number of seconds");
    const confirm = Number(v["confirm-timeout"]);
    if (!(confirm >= 0)) throw new UsageError("--confirm-timeout must be a number of seconds (0 disables)");
    const guardApi = v["guard-api-server"];
    if (guardApi !== "true" && guardApi !== "false") throw new UsageError("--guard-api-server must be true or false");
    if (v.policies) throw new UsageError("--policies needs --standalone (in a cluster the policies come from the API server)");
    const owner = v["owner-daemonset"] === undefined ? undefined : parseOwnerRef(v["owner-daemonset"]);
    if (owner === null) throw new UsageError("--owner-daemonset must be NAMESPACE/NAME");
    // Loaded here only: the standalone agent on a plain server never needs the Kubernetes client.
    const { ClusterAgent } = await import("../agent/cluster.js");
    const { KubeClient } = await import("../kube/client.js");
    agent = new ClusterAgent(KubeClient.load(v.kubeconfig), nft, { nodeName: build.nodeName, build, metricsAddress: v["metrics-address"], reportIntervalMs: report * 1000, driftIntervalMs: drift * 1000, countersIntervalMs: 10_000, confirmTimeoutMs: confirm * 1000, rulesets: new FileRulesetStore(v["state-dir"], v.netns), guardApiServer: guardApi === "true", lock, policyNames: new FilePolicyNames(v["state-dir"], v.netns), ...(owner ? { owner } : {}) }, log);
  }
  await agent.start();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  // The cluster agent says itself what it leaves behind (it may remove the table).
  if (v.standalone) log.info({}, "stopping; the applied ruleset stays enforced");
  await agent.stop();
  return 0;
}
