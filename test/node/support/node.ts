// A real one-node cluster for tests (hack/node-cluster.sh): etcd, the control plane,
// containerd and kubelet all inside the "node" namespace of a node/world pair, with the
// project's image built by hack/node-image.sh and imported into that containerd. Clients
// (kubectl, helm, probes) run in the node namespace through nsenter. stop() tears it all
// down (also from the exit hook when a test fails) and deletes the namespaces.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, must, run, sh, type Result } from "../../support/exec.js";
import { createTopology, type Topology } from "../../support/netns.js";
import { helmBin } from "../../helm/support/tools.js";

export const NODE_IP = "192.0.2.1";
export const NODE_NAME = "node-1";

export interface NodeCluster {
  readonly topo: Topology;
  readonly work: string;
  readonly kubeconfig: string;
  /** kubectl against the cluster, run in the node namespace; never throws. */
  kubectl(args: string[], stdin?: string): Promise<Result>;
  /** helm (hack/helm.sh) against the cluster, run in the node namespace; never throws. */
  helm(args: string[]): Promise<Result>;
  /** `nft list ruleset` in the node namespace. */
  ruleset(): string;
  stop(): Promise<void>;
}

const SCRIPT = join(ROOT, "hack", "node-cluster.sh");
const live = new Set<string>();
process.on("exit", () => {
  for (const work of live) spawnSync("bash", [SCRIPT, "down", work], { stdio: "inherit" });
});

/** hack/node-cluster.sh preflight: throws with exactly what is missing. */
export function preflight(): void {
  const r = sh("bash", [SCRIPT, "preflight"]);
  if (r.code !== 0) throw new Error(`the real-node tier cannot run here:\n${r.stderr.trim()}`);
}

export async function startNodeCluster(): Promise<NodeCluster> {
  preflight();
  const helm = helmBin();
  const topo = await createTopology("k");
  const work = mkdtempSync(join(tmpdir(), "nftegress-node-"));
  live.add(work);
  const stop = async (): Promise<void> => {
    if (live.delete(work)) {
      const r = await run("bash", [SCRIPT, "down", work]);
      if (r.code !== 0) process.stderr.write(`node-cluster down: ${r.stderr}`);
    }
    await topo.close();
  };
  try {
    const img = await run("bash", [join(ROOT, "hack", "node-image.sh"), join(work, "images")]);
    if (img.code !== 0) throw new Error(`hack/node-image.sh failed:\n${img.stderr.trim()}`);
    const up = await run("bash", [SCRIPT, "up", work, topo.node, NODE_IP], undefined, { ...process.env, NODE_NAME });
    if (up.code !== 0) throw new Error(`hack/node-cluster.sh up failed:\n${up.stderr.trim().split("\n").slice(-25).join("\n")}`);
    const env = Object.fromEntries(
      readFileSync(join(work, "env"), "utf8")
        .trim()
        .split("\n")
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    ) as Record<string, string>;
    const kubeconfig = env["KUBECONFIG"] ?? "";
    const kubectlBin = join(env["BIN"] ?? "", "kubectl");
    const inNode = (cmd: string, args: string[], stdin?: string) =>
      run("nsenter", [`--net=/run/netns/${topo.node}`, "--", cmd, ...args], stdin, { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: join(work, "helm", "cache"), HELM_CONFIG_HOME: join(work, "helm", "config"), HELM_DATA_HOME: join(work, "helm", "data") });
    return {
      topo,
      work,
      kubeconfig,
      kubectl: (args, stdin) => inNode(kubectlBin, ["--cache-dir", join(work, "kubectl-cache"), ...args], stdin),
      helm: (args) => inNode(helm, args),
      ruleset: () => must("nsenter", [`--net=/run/netns/${topo.node}`, "--", "nft", "list", "ruleset"]),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
