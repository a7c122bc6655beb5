// make demo-node: the chart on a real local node. etcd, the control plane, containerd and
// kubelet run inside a network namespace made for the demo (the machine's own ruleset is never
// touched); the project's image is built without Docker and imported; `helm install` runs the
// agent DaemonSet and the controller; a policy is applied with kubectl and enforced on real
// packets. With --keep it waits for Ctrl-C so you can try kubectl yourself. Everything is
// torn down at the end, and on Ctrl-C.
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { probeTcp } from "../support/netns.js";
import { eventually } from "../support/agent.js";
import { NODE_IP, NODE_NAME, startNodeCluster } from "../node/support/node.js";

const say = (s: string) => process.stdout.write(`\n\x1b[1m== ${s}\x1b[0m\n`);
const show = (s: string) => process.stdout.write(`${s.trimEnd()}\n`);
const keep = process.argv.includes("--keep");

const POLICY = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: demo}
spec:
  nodeSelector: {matchLabels: {egress: restricted}}
  mode: Enforce
  defaultAction: Allow
  denyResponse: Reject
  rules:
    - {name: no-203, action: Deny, to: {cidrs: ["203.0.113.0/24"]}}
`;

say("1. A one-node cluster inside a network namespace (builds the image, starts kubelet)");
const started = Date.now();
const node = await startNodeCluster();
process.once("SIGINT", () => void node.stop().then(() => process.exit(130)));
try {
  show(`up in ${((Date.now() - started) / 1000).toFixed(1)} s; namespace ${node.topo.node}, node IP ${NODE_IP}`);
  show((await node.kubectl(["get", "nodes", "-o", "wide"])).stdout);

  say("2. helm install nftegress charts/nftegress (image localhost/nftegress:test, imported into containerd)");
  const install = await node.helm([
    "install", "nftegress", join(ROOT, "charts", "nftegress"), "-n", "nftegress-system", "--create-namespace", "--wait", "--timeout", "120s",
    "--set", "image.repository=localhost/nftegress", "--set", "image.tag=test", "--set", "image.pullPolicy=Never",
    "--set", `k8sServiceHost=${NODE_IP}`, "--set", "k8sServicePort=6443",
    "--set", `agent.host.stateDir=${join(node.work, "agent-state")}`, "--set", "agent.reportInterval=2",
  ]);
  if (install.code !== 0) throw new Error(`helm install failed: ${install.stderr}`);
  await eventually("agent Ready", async () => (await node.kubectl(["-n", "nftegress-system", "get", "pods", "-l", "app.kubernetes.io/component=agent", "-o", "jsonpath={.items[*].status.containerStatuses[0].ready}"])).stdout, (s) => s === "true", 90_000);
  show((await node.kubectl(["-n", "nftegress-system", "get", "pods", "-o", "wide"])).stdout);

  const probes = async () => {
    for (const addr of ["203.0.113.5", "198.51.100.40"]) show(`  HTTPS from the node to ${addr} -> ${await probeTcp(node.topo, addr, 443, { timeoutMs: 3000 })}`);
  };
  say("3. Before any policy");
  await probes();

  say("4. kubectl label node egress=restricted; kubectl apply -f - (deny 203.0.113.0/24, Reject)");
  show(POLICY);
  await node.kubectl(["label", "node", NODE_NAME, "egress=restricted"]);
  show((await node.kubectl(["apply", "-f", "-"], POLICY)).stdout);
  await eventually("applied", async () => (await node.kubectl(["get", "egresspolicy", "demo", "-o", "jsonpath={.status.nodes.applied}"])).stdout, (s) => s === "1", 30_000);
  await probes();
  await probes();

  say("5. Status: the node applied it, and the denials are counted");
  await eventually("denied counted", async () => Number((await node.kubectl(["get", "egresspolicy", "demo", "-o", "jsonpath={.status.denied.packets}"])).stdout || 0), (n) => n >= 2, 30_000);
  show((await node.kubectl(["get", "egresspolicies"])).stdout);
  show((await node.kubectl(["get", "nodeegressreports"])).stdout);

  if (keep) {
    say("6. The cluster stays up until Ctrl-C. Try:");
    show(`  export KUBECONFIG=${node.kubeconfig}`);
    show(`  nsenter --net=/run/netns/${node.topo.node} $(hack/kube-assets.sh | tail -1)/kubectl get pods -A`);
    show(`  nsenter --net=/run/netns/${node.topo.node} nft list table inet nftegress`);
    await new Promise(() => undefined);
  }
} finally {
  say("Tear down");
  await node.stop();
  show("done: pods, kubelet, containerd, control plane stopped; cgroups, mounts and namespaces removed");
}
