// The only importer of @kubernetes/client-node. Wraps a KubeConfig with the typed APIs the
// project uses, one shared HTTP dispatcher (client-node builds a new one per request
// otherwise), per-request timeouts, and errors turned into one typed shape.
import * as k8s from "@kubernetes/client-node";

export { k8s };

export type CallOptions = k8s.ConfigurationOptions<k8s.ObservableMiddleware>;

export const FIELD_MANAGER_AGENT = "nftegress-agent";
export const FIELD_MANAGER_CONTROLLER = "nftegress-controller";

export class KubeClient {
  readonly core: k8s.CoreV1Api;
  readonly custom: k8s.CustomObjectsApi;
  readonly discovery: k8s.DiscoveryV1Api;
  readonly coordination: k8s.CoordinationV1Api;
  readonly apps: k8s.AppsV1Api;
  private dispatcher: ReturnType<k8s.RequestContext["getDispatcher"]> | undefined;

  constructor(
    readonly kc: k8s.KubeConfig,
    private readonly timeoutMs = 30_000,
  ) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.custom = kc.makeApiClient(k8s.CustomObjectsApi);
    this.discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    this.coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
  }

  /** In-cluster config when no path is given and the service account is mounted. */
  static load(kubeconfig?: string): KubeClient {
    const kc = new k8s.KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    return new KubeClient(kc);
  }

  /** The API server URL this client talks to. */
  get server(): string {
    return this.kc.getCurrentCluster()?.server ?? "";
  }

  /** Per-call options: the shared dispatcher (or, with fresh, client-node's own one: a new
   *  connection), a timeout, and optional headers. */
  options(headers: Record<string, string> = {}, timeoutMs = this.timeoutMs, fresh = false): CallOptions {
    const self = this;
    const middleware: k8s.ObservableMiddleware = {
      pre(ctx: k8s.RequestContext) {
        if (!fresh) {
          self.dispatcher ??= ctx.getDispatcher();
          if (self.dispatcher) ctx.setDispatcher(self.dispatcher);
        }
        ctx.setSignal(AbortSignal.timeout(timeoutMs));
        for (const [k, v] of Object.entries(headers)) ctx.setHeaderParam(k, v);
        return new k8s.Observable(Promise.resolve(ctx));
      },
      post(ctx: k8s.ResponseContext) {
        return new k8s.Observable(Promise.resolve(ctx));
      },
    };
    return { middleware: [middleware], middlewareMergeStrategy: "append" };
  }

  /** True when the API server answers a read of this Node within timeoutMs, over a new
   *  connection: a kept-alive one is an established flow, which a ruleset that blocks new
   *  connections to the API server would still let through. */
  async reachable(node: string, timeoutMs: number): Promise<boolean> {
    try {
      await this.core.readNode({ name: node }, this.options({}, timeoutMs, true));
      return true;
    } catch (e) {
      return kubeError(e).code !== 0;
    }
  }

  mergePatch(): CallOptions {
    return this.options({ "Content-Type": k8s.PatchStrategy.MergePatch });
  }

  serverSideApply(): CallOptions {
    return this.options({ "Content-Type": k8s.PatchStrategy.ServerSideApply });
  }
}

/** An API failure in one shape: HTTP code (0 for network errors), reason and message. */
export class KubeError extends Error {
  override name = "KubeError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }

  get network(): boolean {
    return this.code === 0;
  }
}

export function kubeError(e: unknown): KubeError {
  if (e instanceof KubeError) return e;
  if (e instanceof k8s.ApiException) {
    const code = typeof e.code === "number" ? e.code : 0;
    const body: unknown = e.body;
    if (typeof body === "string") {
      try {
        const s = JSON.parse(body) as { reason?: unknown; message?: unknown };
        return new KubeError(code, typeof s.reason === "string" ? s.reason : "", typeof s.message === "string" ? s.message : body.slice(0, 300));
      } catch {
        return new KubeError(code, "", body.slice(0, 300));
      }
    }
    return new KubeError(code, "", `HTTP ${code}`);
  }
  if (e instanceof Error) {
    const cause = (e as { cause?: { code?: unknown } }).cause;
    const detail = typeof cause?.code === "string" ? `${e.message} (${cause.code})` : e.message;
    return new KubeError(0, e.name === "TimeoutError" ? "Timeout" : "Network", detail);
  }
  return new KubeError(0, "Unknown", String(e));
}
