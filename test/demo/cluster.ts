// make demo-cluster: a local control plane (etcd, kube-apiserver, kube-controller-manager),
// the controller, and three simulated nodes (a Node object plus an agent in its own network
// namespace each). Applies the examples with kubectl in Audit, then Enforce, and shows what
// happens. Everything is torn down at the end, and on Ctrl-C.
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir } from "../support/files.js";
import { eventually, startAgent, startController, type AgentProcess } from "../support/agent.js";
import { startCluster } from "../kube/support/cluster.js";

const say = (s: string) => process.stdout.write(`\n\x1b[1m== ${s}\x1b[0m\n`);
const show = (s: string) => process.stdout.write(`${s.trimEnd()}\n`);

const cluster = await startCluster();
const files = tempDir();
const topos: Topology[] = [];
const procs: AgentProcess[] = [];
try {
  say("1. Control plane up; three nodes: node-1 and node-2 (role=app), node-3 (role=db)");
  const nodes = [["node-1", "app"], ["node-2", "app"], ["node-3", "db"]] as const;
  for (const [name, role] of nodes) {
    await cluster.kubectl(["apply", "-f", "-"], `apiVersion: v1\nkind: Node\nmetadata: {name: ${name}, labels: {role: ${role}}}\n`);
    const t = await createTopology(name.slice(-1));
    topos.push(t);
    procs.push(await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", name, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--report-interval", "2", "--state-dir", files.state]));
  }
  procs.push(await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "controller-0", "--lease-duration", "5"]));
  show((await cluster.kubectl(["get", "nodes", "-L", "role"])).stdout);

  say("2. kubectl apply -f examples/ (the policy selects every node, in Audit mode)");
  show((await cluster.kubectl(["apply", "-f", join(ROOT, "examples")])).stdout);
  await eventually("all nodes applied", async () => (await cluster.kubectl(["get", "egresspolicy", "app-baseline", "-o", "jsonpath={.status.nodes.applied}"])).stdout, (s) => s === "3", 30_000);
  show((await cluster.kubectl(["get", "egresspolicies"])).stdout);

  const probes = async () => {
    for (const [i, [name]] of nodes.entries()) {
      const t = topos[i] as Topology;
      const allowed = await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 1000 });
      const other = await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 1000 });
      show(`  ${name}: HTTPS to allowed 192.0.2.10 -> ${allowed}; HTTPS to unknown 192.0.2.30 -> ${other}`);
    }
  };
  say("3. Audit: nothing is blocked, would-deny is counted");
  await probes();

  say("4. kubectl patch egresspolicy app-baseline: mode Enforce");
  show((await cluster.kubectl(["patch", "egresspolicy", "app-baseline", "--type", "merge", "-p", '{"spec":{"mode":"Enforce"}}'])).stdout);
  await eventually("generation 2 applied", async () => (await cluster.kubectl(["get", "egresspolicy", "app-baseline", "-o", "jsonpath={.status.observedGeneration}/{.status.nodes.applied}/{.status.conditions[?(@.type==\"Ready\")].status}"])).stdout, (s) => s === "2/3/True", 30_000);
  await probes();
  await probes();

  say("5. Denials rise in the status (reports every 2 s here; 60 s by default)");
  await eventually("denied counted", async () => Number((await cluster.kubectl(["get", "egresspolicy", "app-baseline", "-o", "jsonpath={.status.denied.packets}"])).stdout || 0), (n) => n >= 6, 30_000);
  show((await cluster.kubectl(["get", "egresspolicies"])).stdout);
  const status = await cluster.kubectl(["get", "egresspolicy", "app-baseline", "-o", "jsonpath={.status}"]);
  show(JSON.stringify(JSON.parse(status.stdout), null, 2));

  say("6. One NodeEgressReport per node, owned by its Node:");
  show((await cluster.kubectl(["get", "nodeegressreports"])).stdout);
} finally {
  say("7. Tear down");
  await Promise.all(procs.map((p) => p.stop("SIGTERM")));
  await cluster.stop();
  for (const t of topos) await t.close();
  files.remove();
  show("done: control plane stopped, namespaces deleted");
}
