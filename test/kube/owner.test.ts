// --owner-daemonset against a real kube-apiserver: a stopping agent removes its table only when
// its own DaemonSet is gone or being deleted; a present DaemonSet, one never seen (a wrong
// name) and an unreachable API server all leave the ruleset enforced (fail-static).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { sh } from "../support/exec.js";
import { createTopology, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const DS = (name: string) => `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ${name}, namespace: default}
spec:
  selector: {matchLabels: {app: ${name}}}
  template:
    metadata: {labels: {app: ${name}}}
    spec: {containers: [{name: agent, image: localhost/none}]}
`;

describe("agent --owner-daemonset", () => {
  let cluster: Cluster;
  let files: TempDir;
  let topo: Topology;

  before(async () => {
    cluster = await startCluster();
    files = tempDir();
    topo = await createTopology("o");
    const r = await cluster.kubectl(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: node-o}\n");
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await cluster?.stop();
    await topo?.close();
    files?.remove();
  });

  const hasTable = (): boolean => sh("ip", ["netns", "exec", topo.node, "nft", "list", "table", "inet", "nftegress"]).code === 0;
  const start = async (owner: string): Promise<AgentProcess> => {
    const a = await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", "node-o", "--netns", topo.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state, "--owner-daemonset", owner]);
    await eventually("ready", () => a.get("/readyz"), (r) => r.status === 200, 20_000);
    assert.ok(hasTable());
    return a;
  };

  it("keeps the table when the DaemonSet is there (a deleted pod, a rolling update)", async () => {
    assert.equal((await cluster.kubectl(["apply", "-f", "-"], DS("agent"))).code, 0);
    const a = await start("default/agent");
    const r = await a.stop("SIGTERM");
    assert.equal(r.code, 0);
    assert.ok(hasTable(), "table removed although the DaemonSet exists");
    assert.match(a.log(), /stopping; the applied ruleset stays enforced/);
  });

  it("keeps the table when the DaemonSet was never seen (a wrong name)", async () => {
    const a = await start("default/no-such-daemonset");
    await a.stop("SIGTERM");
    assert.ok(hasTable(), "table removed for a DaemonSet the agent never saw");
  });

  it("keeps the table when the API server is unreachable at SIGTERM", async () => {
    const a = await start("default/agent");
    const outage = cluster.restartApiServer({ downMs: 4_000 });
    await new Promise((r) => setTimeout(r, 500));
    await a.stop("SIGTERM");
    await outage;
    assert.ok(hasTable(), "table removed while the API server was down");
  });

  it("removes the table when its DaemonSet is deleted (helm uninstall)", async () => {
    const a = await start("default/agent");
    assert.equal((await cluster.kubectl(["delete", "daemonset", "agent", "-n", "default"])).code, 0);
    const r = await a.stop("SIGTERM");
    assert.equal(r.code, 0);
    assert.ok(r.ms < 5_000, `took ${r.ms} ms`);
    assert.ok(!hasTable(), "table left behind after the DaemonSet was deleted");
    assert.match(a.log(), /own DaemonSet deleted \(uninstall\): table removed/);
  });

  it("rejects a malformed --owner-daemonset with one line and exit 2", async () => {
    const a = await startAgent(["--kubeconfig", cluster.kubeconfig, "--node-name", "node-o", "--owner-daemonset", "just-a-name"]);
    const code = await new Promise<number | null>((resolve) => (a.child.exitCode !== null ? resolve(a.child.exitCode) : a.child.once("exit", (c) => resolve(c))));
    assert.equal(code, 2);
    assert.match(a.log(), /--owner-daemonset must be NAMESPACE\/NAME/);
  });
});
