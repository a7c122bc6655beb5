// Tells the stopping agent whether its own DaemonSet is gone or being deleted (helm uninstall,
// kubectl delete daemonset): only then does it remove its table on exit. A deleted pod, a
// rolling update or a drained node leaves the DaemonSet in place, and the agent stays
// fail-static. A DaemonSet never seen (a wrong --owner-daemonset) or an unreachable API
// server also keeps the table: absence counts only after the object was seen.
import type { Logger } from "pino";
import { parser } from "../api/parse.js";
import { DaemonSetInfo } from "../api/kube.js";
import { kubeError, type KubeClient } from "../kube/client.js";
import { Reflector, daemonSetSource } from "../kube/reflector.js";
import type { OwnerRef } from "./ownerref.js";

export type { OwnerRef } from "./ownerref.js";

export type OwnerState = "deleted" | "present" | "unknown";

export class OwnerWatch {
  private readonly reflector: Reflector<DaemonSetInfo>;
  private seen = false;

  constructor(
    private readonly client: KubeClient,
    private readonly ref: OwnerRef,
    private readonly log: Logger,
  ) {
    this.reflector = new Reflector(client, daemonSetSource(client, ref.namespace, `metadata.name=${ref.name}`), parser(DaemonSetInfo), log);
    this.reflector.onChange(() => {
      if (this.cached()) this.seen = true;
    });
  }

  start(): void {
    this.reflector.start();
  }

  async stop(): Promise<void> {
    await this.reflector.stop();
  }

  private cached(): DaemonSetInfo | undefined {
    return this.reflector.get(`${this.ref.namespace}/${this.ref.name}`);
  }

  /** The watch's view, then a live read (the watch may lag the pod's SIGTERM). */
  async state(timeoutMs: number): Promise<OwnerState> {
    const cached = this.cached();
    if (cached?.metadata.deletionTimestamp) return "deleted";
    if (this.seen && this.reflector.hasSynced && !cached) return "deleted";
    try {
      const ds = await this.client.apps.readNamespacedDaemonSet(this.ref, this.client.options({}, timeoutMs));
      this.seen = true;
      return ds.metadata?.deletionTimestamp ? "deleted" : "present";
    } catch (e) {
      const err = kubeError(e);
      if (err.code === 404 && this.seen) return "deleted";
      this.log.warn({ daemonset: `${this.ref.namespace}/${this.ref.name}`, code: err.code, error: err.message }, "cannot tell whether the own DaemonSet is being deleted");
      return "unknown";
    }
  }
}
