import { hostname } from "node:os";
import { pino } from "pino";
import { Controller } from "../controller/controller.js";
import { liveness, readiness } from "../controller/health.js";
import { KubeClient } from "../kube/client.js";
import { LeaderElector } from "../kube/lease.js";
import { ControllerMetrics } from "../metrics/metrics.js";
import { serveMetrics } from "../metrics/server.js";
import { UsageError, parse } from "./args.js";

export const CONTROLLER_HELP = `Usage: nftegress controller [--kubeconfig FILE] [options]

Runs the controller: folds every node's NodeEgressReport into EgressPolicy.status (kstatus
conditions Ready/Reconciling/Stalled, node counts, failed nodes, merged top denied
destinations, denials by user), marks policies naming unknown address sets Stalled, and
records Events. Run two replicas: one leads through a coordination.k8s.io Lease, the other
takes over within seconds when the leader goes away.

/readyz answers 503 until the watches (policies, reports, nodes, address sets) have synced and
while one has failed to list or watch for more than 5 s; a follower with synced watches is
ready too, and the body says "leader: true" or "leader: false" (also the gauge
nftegress_controller_leader). /healthz answers 503 when the controller's loop is stuck (no
heartbeat for 60 s, or a reconcile running for 5 minutes).

  --kubeconfig FILE          kubeconfig (default: in-cluster service account, then ~/.kube/config)
  --metrics-address ADDR     listen address for /metrics, /healthz, /readyz (default 127.0.0.1:9470)
  --lease-namespace NS       namespace of the leader Lease and of Events (default: POD_NAMESPACE or default)
  --lease-name NAME          name of the leader Lease (default nftegress-controller)
  --identity ID              this replica's identity (default: POD_NAME or the hostname)
  --lease-duration SEC       how long a dead leader blocks a takeover (default 15)
  --workers N                parallel reconciles (default 2)`;

export async function controllerCommand(argv: string[], out: (l: string) => void): Promise<number> {
  const { values: v } = parse(
    argv,
    {
      kubeconfig: { type: "string" },
      "metrics-address": { type: "string", default: "127.0.0.1:9470" },
      "lease-namespace": { type: "string", default: process.env["POD_NAMESPACE"] ?? "default" },
      "lease-name": { type: "string", default: "nftegress-controller" },
      identity: { type: "string", default: process.env["POD_NAME"] ?? hostname() },
      "lease-duration": { type: "string", default: "15" },
      workers: { type: "string", default: "2" },
    },
    CONTROLLER_HELP,
  );
  if (v.help) return (out(CONTROLLER_HELP), 0);
  const leaseSeconds = Number(v["lease-duration"]);
  const workers = Number(v.workers);
  if (!(Number.isInteger(leaseSeconds) && leaseSeconds >= 2)) throw new UsageError("--lease-duration must be an integer >= 2");
  if (!(Number.isInteger(workers) && workers >= 1)) throw new UsageError("--workers must be an integer >= 1");
  const log = pino({ base: { component: "controller", identity: v.identity } });
  const client = KubeClient.load(v.kubeconfig);
  const metrics = new ControllerMetrics();
  const controller = new Controller(client, metrics, { workers, eventNamespace: v["lease-namespace"], identity: v.identity }, log);
  const stopped = new AbortController();
  let leading = false;
  const server = await serveMetrics(v["metrics-address"], metrics.registry, { live: () => liveness(controller.health()), ready: () => readiness(controller.health()) });
  controller.startWatching();
  const elector = new LeaderElector({
    kc: client.kc,
    namespace: v["lease-namespace"],
    name: v["lease-name"],
    identity: v.identity,
    leaseDurationSeconds: leaseSeconds,
    renewDeadlineMs: Math.max(1000, Math.round(leaseSeconds * 666)),
    retryPeriodMs: Math.max(250, Math.round(leaseSeconds * 133)),
    log,
    onStartedLeading: () => {
      leading = true;
      log.info({}, "became the leader, reconciling");
      void controller.startLeading();
    },
    onStoppedLeading: () => {
      if (!leading) return;
      leading = false;
      // Stop writing at once; keep the watches warm and stand for election again.
      log.warn({}, "lost the leader lease, stopped reconciling");
      void controller.stopLeading();
    },
  });
  const election = elector.run(stopped.signal);
  log.info({ server: client.server, lease: `${v["lease-namespace"]}/${v["lease-name"]}` }, "controller started");
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  log.info({}, "stopping, releasing the lease");
  stopped.abort();
  await election;
  await controller.stop();
  server.close();
  server.closeAllConnections();
  return 0;
}
