import { pino } from "pino";
import { StandaloneAgent } from "../agent/standalone.js";
import { RealNftExecutor } from "../nft/executor.js";
import { HOST_HELP, HOST_OPTIONS, UsageError, parse, parseLabels } from "./args.js";
import { defaultNodeName } from "./build.js";

export const AGENT_HELP = `Usage: nftegress agent --standalone --policies DIR [--netns NAME] [options]

Runs the node agent. With --standalone (plain Linux servers, no Kubernetes) it applies the
policy files in DIR on start and on every change, keeps the last good state of a file that
turns invalid, repairs drift (for example after 'nft flush ruleset') within seconds, and
serves /metrics, /healthz and /readyz. On SIGTERM it exits and leaves the last applied
ruleset enforced; 'nftegress cleanup' removes it.

The in-cluster agent (watching EgressPolicy objects through the API server) is not part of
this version yet: --standalone is required.

  --standalone             run without Kubernetes
  --policies DIR           directory (or file) of EgressPolicy / EgressAddressSet YAML
  --netns NAME             enforce inside this network namespace
  --metrics-address ADDR   listen address for /metrics (default 127.0.0.1:9469)
  --drift-interval SEC     how often the table is compared with the applied state (default 5)
${HOST_HELP}`;

export async function agentCommand(argv: string[], out: (l: string) => void): Promise<number> {
  const { values: v } = parse(
    argv,
    {
      standalone: { type: "boolean", default: false },
      policies: { type: "string" },
      netns: { type: "string" },
      "metrics-address": { type: "string", default: "127.0.0.1:9469" },
      "drift-interval": { type: "string", default: "5" },
      ...HOST_OPTIONS,
    },
    AGENT_HELP,
  );
  if (v.help) return (out(AGENT_HELP), 0);
  if (!v.standalone) throw new UsageError("the in-cluster agent is not available in this version; use --standalone --policies DIR");
  if (!v.policies) throw new UsageError(`--policies DIR is required\n\n${AGENT_HELP}`);
  const drift = Number(v["drift-interval"]);
  if (!(drift > 0)) throw new UsageError("--drift-interval must be a positive number of seconds");
  const log = pino({ base: { component: "agent" } });
  const agent = new StandaloneAgent(
    new RealNftExecutor({ netns: v.netns }),
    {
      policies: v.policies,
      metricsAddress: v["metrics-address"],
      driftIntervalMs: drift * 1000,
      countersIntervalMs: 10_000,
      pollIntervalMs: 1000,
      build: {
        passwd: v.passwd,
        group: v.group,
        resolvConf: v["resolv-conf"],
        failsafeFile: v.failsafe,
        nodeName: defaultNodeName(v["node-name"]),
        nodeLabels: parseLabels(v["node-labels"]),
      },
    },
    log,
  );
  await agent.start();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  log.info({}, "stopping; the applied ruleset stays enforced");
  await agent.stop();
  return 0;
}
