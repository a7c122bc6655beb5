// An envtest-style Kubernetes control plane for tests: etcd, kube-apiserver and
// kube-controller-manager (garbage collector and namespace controllers only) on loopback,
// with this project's CRDs installed through the real API. Binaries come from
// hack/kube-assets.sh (honours KUBEBUILDER_ASSETS). Everything lives in one temp dir that
// stop() removes; stop() also runs on process exit, so nothing leaks when a test fails.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { createServer, type AddressInfo } from "node:net";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";
import yaml from "js-yaml";
import { ROOT, must, providedDir, run, type Result } from "../../support/exec.js";

export interface Cluster {
  /** https://127.0.0.1:PORT */
  readonly server: string;
  /** Path of an admin kubeconfig (bearer token in system:masters, CA from --cert-dir). */
  readonly kubeconfig: string;
  readonly kc: k8s.KubeConfig;
  readonly kubectlPath: string;
  /** Temp dir holding data, certs and the components' logs (*.log). */
  readonly dir: string;
  /** Runs kubectl against this cluster; never throws on a non-zero exit. */
  kubectl(args: string[], stdin?: string): Promise<Result>;
  /** Stops kube-apiserver (SIGKILL, as a crash) and starts it again on the same port and etcd. */
  restartApiServer(opts?: { downMs?: number }): Promise<void>;
  /** Stops everything and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 90_000;
const ESTABLISHED_TIMEOUT_MS = 30_000;
const APISERVER_GRACE_MS = 5_000;
const OTHER_GRACE_MS = 3_000;

/** Processes and temp dirs of clusters not stopped yet, for the synchronous exit hook. */
const live = new Map<string, ChildProcess[]>();

function killAllNow(): void {
  for (const [dir, procs] of live) {
    for (const p of procs) if (running(p)) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
}
process.on("exit", killAllNow);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  // Exit (running every "exit" hook, ours included) instead of dying without them.
  process.once(sig, () => process.exit(128 + constants.signals[sig]));
}

function running(p: ChildProcess): boolean {
  return p.exitCode === null && p.signalCode === null;
}

async function stopProcess(p: ChildProcess, graceMs: number): Promise<void> {
  if (!running(p)) return;
  const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
  p.kill("SIGTERM");
  const timer = setTimeout(() => p.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer); // a pending timer would keep the test process alive
}

/** Free loopback ports, all distinct (held open together while choosing). */
async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  const ports = await Promise.all(
    servers.map((s) => new Promise<number>((resolve, reject) => {
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => resolve((s.address() as AddressInfo).port));
    })),
  );
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}


function tail(file: string, lines = 15): string {
  if (!existsSync(file)) return "(no log)";
  return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
}

/** GET https://127.0.0.1:port/readyz verified with the CA; true on 200. */
function readyz(port: number, ca: Buffer, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/readyz", ca, headers: { authorization: `Bearer ${token}` }, timeout: 2_000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}

export async function startCluster(): Promise<Cluster> {
  const bin = providedDir("kube-assets.sh");
  const dir = mkdtempSync(join(tmpdir(), "nftegress-kube-"));
  const procs: ChildProcess[] = [];
  live.set(dir, procs);

  const names = new Map<ChildProcess, string>();
  const start = (name: string, args: string[]): ChildProcess => {
    const log = openSync(join(dir, `${name}.log`), "w");
    const p = spawn(join(bin, name), args, { stdio: ["ignore", log, log] });
    closeSync(log);
    procs.push(p);
    names.set(p, name);
    return p;
  };
  const assertAlive = (): void => {
    for (const p of procs) {
      if (!running(p)) {
        const name = names.get(p) ?? "?";
        throw new Error(`${name} exited (${p.exitCode ?? p.signalCode}); last lines of ${name}.log:\n${tail(join(dir, `${name}.log`))}`);
      }
    }
  };

  let stopping: Promise<void> | undefined;
  let restartApiServer: Cluster["restartApiServer"] = () => Promise.reject(new Error("not started"));
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // Clients first: kube-apiserver's graceful shutdown waits up to its 60 s request
      // timeout while a client (the controller-manager's watches) stays connected; without
      // clients it exits in about 1 s. etcd last, or the API server hangs on it.
      const [etcd, apiserver, kcm] = procs;
      if (kcm) await stopProcess(kcm, OTHER_GRACE_MS);
      if (apiserver) await stopProcess(apiserver, APISERVER_GRACE_MS);
      if (etcd) await stopProcess(etcd, OTHER_GRACE_MS);
      rmSync(dir, { recursive: true, force: true });
      live.delete(dir);
    })();
    return stopping;
  };

  try {
    const [etcdPort, peerPort, apiPort] = await freePorts(3);
    if (etcdPort === undefined || peerPort === undefined || apiPort === undefined) throw new Error("no free ports");
    start("etcd", [
      "--name", "default", "--data-dir", join(dir, "etcd"), "--unsafe-no-fsync",
      "--listen-client-urls", `http://127.0.0.1:${etcdPort}`,
      "--advertise-client-urls", `http://127.0.0.1:${etcdPort}`,
      "--listen-peer-urls", `http://127.0.0.1:${peerPort}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${peerPort}`,
      "--initial-cluster", `default=http://127.0.0.1:${peerPort}`,
    ]);

    const saKey = join(dir, "sa.key");
    must("openssl", ["genrsa", "-out", saKey, "2048"]);
    const token = randomBytes(16).toString("hex");
    const tokens = join(dir, "tokens.csv");
    writeFileSync(tokens, `${token},admin,admin,system:masters\n`);
    const certDir = join(dir, "certs");
    const apiserverArgs = [
      "--etcd-servers", `http://127.0.0.1:${etcdPort}`,
      "--secure-port", String(apiPort), "--bind-address", "127.0.0.1", "--cert-dir", certDir,
      "--service-account-issuer", "https://kubernetes.default.svc",
      "--service-account-key-file", saKey,
      "--service-account-signing-key-file", saKey,
      "--authorization-mode", "RBAC", "--token-auth-file", tokens,
      "--service-cluster-ip-range", "10.0.0.0/24",
    ];
    start("kube-apiserver", apiserverArgs);

    // The self-signed serving certificate in --cert-dir carries its CA; it names 127.0.0.1.
    const caFile = join(certDir, "apiserver.crt");
    const server = `https://127.0.0.1:${apiPort}`;
    const waitReady = async (): Promise<void> => {
      const deadline = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        assertAlive();
        if (existsSync(caFile) && (await readyz(apiPort, readFileSync(caFile), token))) break;
        if (Date.now() > deadline) {
          throw new Error(`kube-apiserver not ready after ${READY_TIMEOUT_MS} ms; last lines of kube-apiserver.log:\n${tail(join(dir, "kube-apiserver.log"))}`);
        }
        await sleep(200);
      }
    };
    await waitReady();
    restartApiServer = async (opts = {}) => {
      const old = procs[1];
      if (old && running(old)) {
        const exited = new Promise<void>((resolve) => old.once("exit", () => resolve()));
        old.kill("SIGKILL");
        await exited;
      }
      await sleep(opts.downMs ?? 0);
      // Same slot in procs, so stop() keeps its order; the log is appended to.
      const log = openSync(join(dir, "kube-apiserver.log"), "a");
      const p = spawn(join(bin, "kube-apiserver"), apiserverArgs, { stdio: ["ignore", log, log] });
      closeSync(log);
      procs[1] = p;
      names.set(p, "kube-apiserver");
      await waitReady();
    };

    const kubeconfig = join(dir, "kubeconfig");
    writeFileSync(kubeconfig, yaml.dump({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "envtest", cluster: { server, "certificate-authority": caFile } }],
      users: [{ name: "admin", user: { token } }],
      contexts: [{ name: "envtest", context: { cluster: "envtest", user: "admin" } }],
      "current-context": "envtest",
    }));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(kubeconfig);

    start("kube-controller-manager", [
      "--kubeconfig", kubeconfig,
      "--authentication-kubeconfig", kubeconfig,
      "--authorization-kubeconfig", kubeconfig,
      "--controllers", "garbagecollector,namespace",
      "--leader-elect=false",
      "--secure-port", "0",
    ]);

    await installCrds(kc, join(ROOT, "crds"));
    assertAlive();

    const kubectlPath = join(bin, "kubectl");
    const cacheDir = join(dir, "kubectl-cache");
    return {
      server,
      kubeconfig,
      kc,
      kubectlPath,
      dir,
      kubectl: (args, stdin) => run(kubectlPath, ["--kubeconfig", kubeconfig, "--cache-dir", cacheDir, ...args], stdin),
      restartApiServer: (opts) => restartApiServer(opts),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Creates every CRD in dir/*.yaml and waits until each is Established. The YAML goes through
 * k8s.loadAllYaml so the model keeps x-kubernetes-validations, enum and default (a plain
 * object would lose them silently in client-node's serializer).
 */
export async function installCrds(kc: k8s.KubeConfig, dir: string): Promise<string[]> {
  const api = kc.makeApiClient(k8s.ApiextensionsV1Api);
  const names: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort()) {
    for (const doc of k8s.loadAllYaml(readFileSync(join(dir, file), "utf8")) as unknown[]) {
      if (!(doc instanceof k8s.V1CustomResourceDefinition)) throw new Error(`${file}: not a CustomResourceDefinition`);
      try {
        await api.createCustomResourceDefinition({ body: doc, fieldManager: "nftegress-test" });
      } catch (err) {
        throw new Error(`${file}: API server rejected the CRD: ${describeApiError(err)}`);
      }
      names.push(doc.metadata?.name ?? file);
    }
  }
  const deadline = Date.now() + ESTABLISHED_TIMEOUT_MS;
  for (const name of names) {
    for (;;) {
      const crd = await api.readCustomResourceDefinition({ name });
      const conds = crd.status?.conditions ?? [];
      if (conds.some((c) => c.type === "Established" && c.status === "True")) break;
      if (Date.now() > deadline) throw new Error(`CRD ${name} not Established: ${JSON.stringify(conds)}`);
      await sleep(100);
    }
  }
  return names;
}

/** The Status message of an ApiException (its body is raw JSON), else the error text. */
export function describeApiError(err: unknown): string {
  if (err instanceof k8s.ApiException) {
    const body: unknown = err.body;
    if (typeof body === "string") {
      try {
        const status: unknown = JSON.parse(body);
        if (typeof status === "object" && status !== null && "message" in status && typeof status.message === "string") {
          return `${err.code}: ${status.message}`;
        }
      } catch {
        // not JSON: fall through to the raw body
      }
      return `${err.code}: ${body}`;
    }
    return `HTTP ${err.code}`;
  }
  return err instanceof Error ? err.message : String(err);
}
