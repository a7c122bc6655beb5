// The chart on a real node: kubelet and containerd (inside a network namespace made for the
// test) run the agent DaemonSet from the project's own image, and it enforces on that node.
// Packets are real: probes leave the node namespace towards the world namespace.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { ROOT, must, sh } from "../support/exec.js";
import { eventually } from "../support/agent.js";
import { probeTcp, type ProbeResult } from "../support/netns.js";
import { NODE_NAME, NODE_IP, startNodeCluster, type NodeCluster } from "./support/node.js";

const NS = "nftegress-system";
const AGENT = "app.kubernetes.io/component=agent";
const DENIED = "198.51.100.40";
const OPEN = "198.51.100.41";
const LABEL = "nftegress-test/egress";

const POLICY = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: node-egress}
spec:
  nodeSelector: {matchLabels: {${LABEL}: "on"}}
  mode: Enforce
  defaultAction: Allow
  denyResponse: Reject
  rules:
    - {name: no-world-40, action: Deny, to: {cidrs: ["${DENIED}/32"]}}
`;

interface ContainerState {
  waiting?: { reason?: string; message?: string };
  terminated?: { reason?: string; message?: string; exitCode?: number };
  running?: unknown;
}
interface Pod {
  metadata: { name: string; uid: string; deletionTimestamp?: string };
  spec: { hostNetwork?: boolean; containers: { securityContext?: Record<string, unknown> }[] };
  status: {
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { ready: boolean; restartCount: number; state?: ContainerState; lastState?: ContainerState }[];
  };
}
interface PolicyStatus {
  status?: { observedGeneration?: number; nodes?: { selected: number; applied: number; failed: number; pending: number }; denied?: { packets: number } };
}

describe("the chart on a real node (kubelet + containerd in a network namespace)", () => {
  let node: NodeCluster;
  let rootBefore: string;

  const json = async <T>(args: string[]): Promise<T> => {
    const r = await node.kubectl([...args, "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as T;
  };
  const agentPods = async (): Promise<Pod[]> => (await json<{ items: Pod[] }>(["-n", NS, "get", "pods", "-l", AGENT])).items;
  const ready = (p: Pod): boolean => !p.metadata.deletionTimestamp && (p.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
  /** The one Ready agent pod, waiting for it (and for every other agent pod to be gone). */
  const readyAgent = async (notUid?: string, ms = 90_000): Promise<Pod> => {
    const pods = await eventually("one Ready agent pod", agentPods, (ps) => ps.length === 1 && ps.every(ready) && ps[0]?.metadata.uid !== notUid, ms);
    const pod = pods[0];
    assert.ok(pod);
    return pod;
  };
  const policy = (): Promise<PolicyStatus> => json<PolicyStatus>(["get", "egresspolicy", "node-egress"]);
  // Reject answers TCP with a reset ("refused"), anything else with an ICMP error. The listener
  // accepts every connection, so "refused" or "unreachable" can only come from the policy.
  const probe = (addr: string): Promise<ProbeResult> => probeTcp(node.topo, addr, 443, { timeoutMs: 3000 });
  const isBlocked = (r: ProbeResult): boolean => r === "unreachable" || r === "refused";
  const blocked = (addr = DENIED) => eventually(`${addr} blocked`, () => probe(addr), isBlocked, 30_000);
  const open = (addr = DENIED) => eventually(`${addr} open`, () => probe(addr), (r) => r === "connected", 30_000);
  /** Denied packets the kernel counted in our table (named counters). */
  const kernelDenied = (): number => {
    const out = must("nsenter", [`--net=/run/netns/${node.topo.node}`, "--", "nft", "-j", "list", "counters", "table", "inet", "nftegress"]);
    let sum = 0;
    for (const o of (JSON.parse(out) as { nftables: { counter?: { packets: number } }[] }).nftables) sum += o.counter?.packets ?? 0;
    return sum;
  };
  /** Probes DENIED without pause while fn runs; returns how often it connected. */
  const probeDuring = async (fn: () => Promise<void>): Promise<{ attempts: number; connected: number }> => {
    const p = spawn("nsenter", [`--net=/run/netns/${node.topo.node}`, "--", process.execPath, join(ROOT, "dist", "test", "support", "prober.js"), `--addr=${DENIED}`, "--port=443"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    await eventually("prober started", async () => out, (o) => o.includes("probing"), 10_000);
    try {
      await fn();
    } finally {
      p.kill("SIGTERM");
      await new Promise((r) => p.once("exit", r));
    }
    const last = out.trim().split("\n").pop() ?? "{}";
    return JSON.parse(last) as { attempts: number; connected: number };
  };
  const helmInstallArgs = (): string[] => [
    join(ROOT, "charts", "nftegress"), "-n", NS, "--wait", "--timeout", "120s",
    "--set", "image.repository=localhost/nftegress", "--set", "image.tag=test", "--set", "image.pullPolicy=Never",
    "--set", `k8sServiceHost=${NODE_IP}`, "--set", "k8sServicePort=6443",
    "--set", `agent.host.stateDir=${join(node.work, "agent-state")}`,
    "--set", "agent.reportInterval=2", "--set", "agent.driftInterval=2",
  ];

  before(async () => {
    rootBefore = must("nft", ["list", "ruleset"]);
    node = await startNodeCluster();
  });
  after(async () => {
    await node?.stop();
  });

  it("helm install --wait: the agent pod becomes Ready with only NET_ADMIN, and its table is the node's", async () => {
    const r = await node.helm(["install", "nftegress", ...helmInstallArgs(), "--create-namespace"]);
    assert.equal(r.code, 0, r.stderr);
    const pod = await readyAgent();
    assert.equal(pod.spec.hostNetwork, true);
    const sc = pod.spec.containers[0]?.securityContext ?? {};
    assert.deepEqual(sc["capabilities"], { add: ["NET_ADMIN"], drop: ["ALL"] });
    assert.equal(sc["privileged"], false);
    assert.equal(sc["readOnlyRootFilesystem"], true);
    // What the running container really has: only CAP_NET_ADMIN (bit 12) effective.
    const status = await node.kubectl(["-n", NS, "exec", pod.metadata.name, "--", "/usr/local/bin/node", "-e", "process.stdout.write(require('fs').readFileSync('/proc/self/status','utf8'))"]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^CapEff:\s*0000000000001000$/m);
    assert.match(node.ruleset(), /table inet nftegress/);
    assert.doesNotMatch(must("nft", ["list", "ruleset"]), /nftegress/);
    // Every watch works with the chart's RBAC (its own DaemonSet by name included).
    await new Promise((r) => setTimeout(r, 2000));
    const logs = await node.kubectl(["-n", NS, "logs", pod.metadata.name]);
    assert.doesNotMatch(logs.stdout, /forbidden/i);
  });

  it("a policy applied with kubectl is enforced on real packets; status shows the node applied and the drops", async () => {
    assert.equal((await node.kubectl(["label", "node", NODE_NAME, `${LABEL}=on`])).code, 0);
    const r = await node.kubectl(["apply", "-f", "-"], POLICY);
    assert.equal(r.code, 0, r.stderr);
    await blocked();
    assert.equal(await probe(OPEN), "connected");
    await eventually("node applied in status", policy, (p) => p.status?.nodes?.applied === 1 && p.status.nodes.selected === 1 && p.status.nodes.failed === 0, 30_000);
    const before = (await policy()).status?.denied?.packets ?? 0;
    for (let i = 0; i < 3; i++) assert.ok(isBlocked(await probe(DENIED)));
    await eventually("drops in status", policy, (p) => (p.status?.denied?.packets ?? 0) >= before + 3, 30_000);
  });

  it("relabelling the Node moves enforcement", async () => {
    assert.equal((await node.kubectl(["label", "node", NODE_NAME, `${LABEL}=off`, "--overwrite"])).code, 0);
    await open();
    await eventually("no node selected", policy, (p) => p.status?.nodes?.selected === 0, 30_000);
    assert.equal((await node.kubectl(["label", "node", NODE_NAME, `${LABEL}=on`, "--overwrite"])).code, 0);
    await blocked();
  });

  it("a default-deny policy keeps the node's own pods reachable (kubelet probes): guard local-pods", async () => {
    const podCidr = await node.kubectl(["get", "node", NODE_NAME, "-o", "jsonpath={.spec.podCIDR}"]);
    assert.equal(podCidr.stdout, "10.244.0.0/24");
    const controllers = (await json<{ items: (Pod & { status: { podIP?: string } })[] }>(["-n", NS, "get", "pods", "-l", "app.kubernetes.io/component=controller"])).items;
    const podIp = controllers.find((p) => p.status.podIP)?.status.podIP;
    assert.ok(podIp?.startsWith("10.244.0."), `controller pod IP ${podIp}`);
    const lockdown = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: lockdown}
spec:
  nodeSelector: {matchLabels: {${LABEL}: "on"}}
  mode: Enforce
  defaultAction: Deny
  denyResponse: Reject
  rules: []
`;
    assert.equal((await node.kubectl(["apply", "-f", "-"], lockdown)).code, 0);
    try {
      await blocked(OPEN);
      // What kubelet's readiness probe does: the node connects to the pod's metrics port.
      assert.equal(await probeTcp(node.topo, podIp ?? "", 9470, { timeoutMs: 3000, greeting: false }), "connected");
      assert.match(must("nsenter", [`--net=/run/netns/${node.topo.node}`, "--", "nft", "list", "chain", "inet", "nftegress", "guard"]), /ip daddr 10\.244\.0\.0\/24 goto accepted comment "guard:local-pods/);
      const pods = (await json<{ items: Pod[] }>(["-n", NS, "get", "pods"])).items;
      assert.ok(pods.every(ready), "every pod stays Ready");
    } finally {
      assert.equal((await node.kubectl(["delete", "egresspolicy", "lockdown"])).code, 0);
    }
    await open(OPEN);
    await blocked();
  });

  it("helm upgrade rolls the agent without a moment where the deny is open", async () => {
    const old = await readyAgent();
    const seen = await probeDuring(async () => {
      const r = await node.helm(["upgrade", "nftegress", ...helmInstallArgs(), "--set-string", "agent.podAnnotations.nftegress-test/roll=1"]);
      assert.equal(r.code, 0, r.stderr);
      await readyAgent(old.metadata.uid);
    });
    assert.ok(seen.attempts >= 5, `only ${seen.attempts} probes during the roll`);
    assert.equal(seen.connected, 0, `the deny was open for ${seen.connected} of ${seen.attempts} probes during the roll`);
  });

  it("kubectl delete pod keeps enforcement (fail-static) and the new pod takes over without flushing counters", async () => {
    const old = await readyAgent();
    for (let i = 0; i < 2; i++) assert.ok(isBlocked(await probe(DENIED)));
    const countedBefore = kernelDenied();
    assert.ok(countedBefore > 0);
    const seen = await probeDuring(async () => {
      const r = await node.kubectl(["-n", NS, "delete", "pod", old.metadata.name, "--wait=true"]);
      assert.equal(r.code, 0, r.stderr);
      await readyAgent(old.metadata.uid);
    });
    assert.equal(seen.connected, 0, `the deny was open for ${seen.connected} of ${seen.attempts} probes`);
    assert.ok(kernelDenied() >= countedBefore + seen.attempts, `counters went from ${countedBefore} to ${kernelDenied()} with ${seen.attempts} more denials`);
  });

  it("an agent pod without NET_ADMIN fails clearly: its status and log say why; enforcement stays", async () => {
    const old = await readyAgent();
    const patch = '[{"op":"replace","path":"/spec/template/spec/containers/0/securityContext/capabilities/add","value":[]}]';
    let r = await node.kubectl(["-n", NS, "patch", "daemonset", "nftegress-agent", "--type=json", "-p", patch]);
    assert.equal(r.code, 0, r.stderr);
    const pods = await eventually(
      "the new pod failing",
      agentPods,
      (ps) => ps.some((p) => p.metadata.uid !== old.metadata.uid && (p.status.containerStatuses?.[0]?.lastState?.terminated?.message ?? "").includes("CAP_NET_ADMIN")),
      90_000,
    );
    const failing = pods.find((p) => p.metadata.uid !== old.metadata.uid);
    assert.ok(failing);
    assert.ok(!ready(failing));
    const term = failing.status.containerStatuses?.[0]?.lastState?.terminated;
    assert.equal(term?.exitCode, 1);
    assert.match(term?.message ?? "", /missing capability CAP_NET_ADMIN/);
    // The crashed container's log (the current one while it waits in CrashLoopBackOff).
    await eventually(
      "the log saying why",
      async () => {
        const [cur, prev] = await Promise.all([node.kubectl(["-n", NS, "logs", failing.metadata.name]), node.kubectl(["-n", NS, "logs", failing.metadata.name, "--previous"])]);
        return cur.stdout + prev.stdout;
      },
      (l) => /missing capability CAP_NET_ADMIN/.test(l),
      30_000,
    );
    assert.ok(isBlocked(await probe(DENIED)));
    r = await node.kubectl(["-n", NS, "rollout", "undo", "daemonset/nftegress-agent"]);
    assert.equal(r.code, 0, r.stderr);
    await readyAgent(failing.metadata.uid);
    await blocked();
  });

  it("helm uninstall leaves no table", async () => {
    const r = await node.helm(["uninstall", "nftegress", "-n", NS, "--wait", "--timeout", "60s"]);
    assert.equal(r.code, 0, r.stderr);
    await eventually("no agent pod", agentPods, (ps) => ps.length === 0, 60_000);
    await eventually("table removed", async () => node.ruleset(), (rs) => !rs.includes("table inet nftegress"), 15_000);
    await open();
  });

  it("teardown removes everything and the machine's ruleset is as it was", async () => {
    const cgroup = /^CGROUP=(.+)$/m.exec(readFileSync(join(node.work, "env"), "utf8"))?.[1];
    assert.ok(cgroup?.startsWith("/nftegress-"));
    await node.stop();
    assert.equal(must("nft", ["list", "ruleset"]), rootBefore);
    assert.equal(existsSync(node.work), false);
    assert.doesNotMatch(readFileSync("/proc/self/mountinfo", "utf8"), new RegExp(node.work));
    assert.equal(sh("pgrep", ["-f", node.work]).stdout, "", "processes left running");
    for (const h of readdirSync("/sys/fs/cgroup")) assert.equal(existsSync(join("/sys/fs/cgroup", h, cgroup ?? "")), false, `cgroup left in ${h}`);
    assert.ok(!existsSync(`/run/netns/${node.topo.node}`));
  });
});
