// Lease-based leader election (coordination.k8s.io/v1), a small version of client-go's
// leaderelection package.
//
// Safety rests on two rules:
// - A follower never trusts the timestamps in the Lease (replicas' clocks need not agree). It
//   remembers, on its own monotonic clock, when it last saw the Lease's record change, and takes
//   the Lease over only when the holder's leaseDurationSeconds have passed since then without a
//   change (or when no one holds it).
// - A leader that has not renewed within renewDeadline (measured from the moment it sent its last
//   successful renewal, renewDeadline < leaseDuration) stops leading; every request carries a
//   timeout so a hung API server cannot hold the leader past that point. So the old leader stops
//   before any follower can consider the Lease expired.
// Every write is a replace carrying the resourceVersion last read or written: a 409 means someone
// else changed the Lease first.
import * as k8s from "@kubernetes/client-node";
import { performance } from "node:perf_hooks";
import { setTimeout as sleepTimer } from "node:timers/promises";

const FIELD_MANAGER = "nftegress-leader-election";

/** The subset of a pino logger this module uses: static messages, structured fields. */
export interface LeaderElectionLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface LeaderElectorOptions {
  kc: k8s.KubeConfig;
  namespace: string;
  /** Name of the Lease object. */
  name: string;
  /** Unique per replica (the pod name). */
  identity: string;
  /** How long a follower waits after the last observed change before taking over. Default 15. */
  leaseDurationSeconds?: number;
  /** A leader that has not renewed for this long stops leading. Default 10000. */
  renewDeadlineMs?: number;
  /** Interval between attempts, both to acquire and to renew. Default 2000. */
  retryPeriodMs?: number;
  log?: LeaderElectionLog;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
}

/** The election-relevant part of a Lease's spec, times as the API server's strings. */
interface LeaseRecord {
  holderIdentity: string;
  leaseDurationSeconds: number | undefined;
  acquireTime: string | undefined;
  renewTime: string | undefined;
  leaseTransitions: number;
}

type Attempt =
  | "leader" // we hold the Lease now (acquired or renewed)
  | "held" // someone else holds a Lease that has not expired by our observation
  | "failed"; // conflict or error; try again later

const noopLog: LeaderElectionLog = { info: () => {}, warn: () => {} };

/** Monotonic milliseconds: immune to wall-clock steps. */
const now = (): number => performance.now();

/** A Lease time field: a string when read back, a V1MicroTime when we built it. */
function timeText(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === "string" ? value : undefined;
}

function microTime(text: string | undefined, fallback: Date): k8s.V1MicroTime {
  const ms = text === undefined ? Number.NaN : Date.parse(text);
  return new k8s.V1MicroTime(Number.isNaN(ms) ? fallback.getTime() : ms);
}

function recordOf(lease: k8s.V1Lease): LeaseRecord {
  const spec = lease.spec;
  return {
    holderIdentity: spec?.holderIdentity ?? "",
    leaseDurationSeconds: spec?.leaseDurationSeconds,
    acquireTime: timeText(spec?.acquireTime),
    renewTime: timeText(spec?.renewTime),
    leaseTransitions: spec?.leaseTransitions ?? 0,
  };
}

/** Structured fields describing an error, for logs; Status bodies are raw JSON strings. */
function errorFields(err: unknown): Record<string, unknown> {
  if (err instanceof k8s.ApiException) {
    const fields: Record<string, unknown> = { code: err.code };
    const body: unknown = err.body;
    if (typeof body === "string") {
      try {
        const status: unknown = JSON.parse(body);
        if (typeof status === "object" && status !== null) {
          if ("reason" in status && typeof status.reason === "string") fields.reason = status.reason;
          if ("message" in status && typeof status.message === "string") fields.error = status.message;
        }
      } catch {
        fields.error = body.slice(0, 200);
      }
    }
    return fields;
  }
  if (err instanceof Error) {
    const cause: unknown = err.cause;
    const code = typeof cause === "object" && cause !== null && "code" in cause ? cause.code : undefined;
    return { error: err.message, errorName: err.name, ...(code === undefined ? {} : { cause: String(code) }) };
  }
  return { error: String(err) };
}

/**
 * The metadata for a replace: the base's (labels, annotations, resourceVersion kept), without
 * managedFields (left out, the API server keeps them).
 */
function metadataOf(base: k8s.V1Lease, name: string, namespace: string): k8s.V1ObjectMeta {
  return { ...base.metadata, managedFields: undefined, name, namespace };
}

function statusCode(err: unknown): number | undefined {
  return err instanceof k8s.ApiException ? err.code : undefined;
}

/** Options for one API call: a timeout, and the caller's abort signal when given. */
function requestOptions(timeoutMs: number, signal?: AbortSignal): k8s.ConfigurationOptions {
  const timeout = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const middleware: k8s.ObservableMiddleware = {
    pre: (ctx) => {
      ctx.setSignal(combined);
      return new k8s.Observable(Promise.resolve(ctx));
    },
    post: (rsp) => new k8s.Observable(Promise.resolve(rsp)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

/** Sleeps ms; false when the signal aborted first. */
async function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (ms <= 0) return true;
  try {
    await sleepTimer(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

export class LeaderElector {
  private readonly api: k8s.CoordinationV1Api;
  private readonly namespace: string;
  private readonly name: string;
  private readonly identity: string;
  private readonly leaseDurationSeconds: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly log: LeaderElectionLog;
  private readonly onStartedLeading: () => void;
  private readonly onStoppedLeading: () => void;
  private readonly fields: Record<string, unknown>;

  private leading = false;
  private running = false;
  /** The Lease as last read or written by us: its resourceVersion guards the next write. */
  private lease: k8s.V1Lease | undefined;
  /** JSON of the record last observed, and when (monotonic) it was first seen in that state. */
  private observedKey: string | undefined;
  private observedAt = 0;
  /** Monotonic time at which the last successful write of ours was sent. */
  private renewedAt = 0;

  constructor(opts: LeaderElectorOptions) {
    this.namespace = opts.namespace;
    this.name = opts.name;
    this.identity = opts.identity;
    this.leaseDurationSeconds = opts.leaseDurationSeconds ?? 15;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = opts.retryPeriodMs ?? 2_000;
    this.log = opts.log ?? noopLog;
    this.onStartedLeading = opts.onStartedLeading;
    this.onStoppedLeading = opts.onStoppedLeading;
    this.fields = { lease: `${this.namespace}/${this.name}`, identity: this.identity };
    if (!this.identity) throw new Error("leader election: identity must not be empty");
    if (!Number.isInteger(this.leaseDurationSeconds) || this.leaseDurationSeconds < 1) {
      throw new Error("leader election: leaseDurationSeconds must be a positive integer");
    }
    if (!(this.retryPeriodMs > 0 && this.retryPeriodMs < this.renewDeadlineMs && this.renewDeadlineMs < this.leaseDurationSeconds * 1000)) {
      throw new Error("leader election: need 0 < retryPeriodMs < renewDeadlineMs < leaseDurationSeconds * 1000");
    }
    this.api = opts.kc.makeApiClient(k8s.CoordinationV1Api);
  }

  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until signal aborts: acquires, renews, and after losing the Lease campaigns again.
   * On abort while leading, calls onStoppedLeading and then releases the Lease so another replica
   * takes over at its next retry. Resolves after the abort; API errors are logged and retried.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error("leader election: run() is already running");
    this.running = true;
    try {
      while (!signal.aborted) {
        const attempt = await this.tryAcquireOrRenew(this.renewDeadlineMs, signal);
        if (signal.aborted) break;
        if (attempt !== "leader") {
          await sleep(this.retryPeriodMs, signal);
          continue;
        }
        this.startLeading();
        const end = await this.renewLoop(signal);
        if (end === "aborted") {
          this.stopLeading("shutdown");
          await this.release();
          break;
        }
        this.stopLeading(end);
        await sleep(this.retryPeriodMs, signal);
      }
    } finally {
      this.running = false;
    }
  }

  private startLeading(): void {
    this.leading = true;
    this.log.info({ ...this.fields, transitions: this.lease?.spec?.leaseTransitions ?? 0 }, "became leader");
    try {
      this.onStartedLeading();
    } catch (err) {
      this.log.warn({ ...this.fields, ...errorFields(err) }, "onStartedLeading threw");
    }
  }

  private stopLeading(reason: string): void {
    this.leading = false;
    this.log.info({ ...this.fields, reason }, "stopped leading");
    try {
      this.onStoppedLeading();
    } catch (err) {
      this.log.warn({ ...this.fields, ...errorFields(err) }, "onStoppedLeading threw");
    }
  }

  /**
   * Renews every retry period until the renew deadline passes without a successful renewal,
   * someone else is seen holding the Lease, or the signal aborts.
   */
  private async renewLoop(signal: AbortSignal): Promise<"aborted" | "deadline" | "taken"> {
    for (;;) {
      const deadline = this.renewedAt + this.renewDeadlineMs;
      if (!(await sleep(Math.min(this.retryPeriodMs, deadline - now()), signal))) return "aborted";
      const remaining = deadline - now();
      if (remaining <= 0) {
        this.log.warn({ ...this.fields, renewDeadlineMs: this.renewDeadlineMs }, "lease not renewed within the renew deadline");
        return "deadline";
      }
      const attempt = await this.tryAcquireOrRenew(remaining, signal);
      if (signal.aborted) return "aborted";
      if (attempt === "held") return "taken";
    }
  }

  /**
   * One attempt to acquire or renew. While leading, first a blind renewal with the cached
   * resourceVersion (one request in the common case); on any failure, read the Lease and decide.
   */
  private async tryAcquireOrRenew(timeoutMs: number, signal: AbortSignal): Promise<Attempt> {
    const started = now();
    const opts = (): k8s.ConfigurationOptions => requestOptions(timeoutMs - (now() - started), signal);

    if (this.leading && this.lease) {
      try {
        const body = this.buildLease(this.lease, recordOf(this.lease));
        this.wrote(await this.api.replaceNamespacedLease({ name: this.name, namespace: this.namespace, body, fieldManager: FIELD_MANAGER }, opts()), started);
        return "leader";
      } catch (err) {
        if (signal.aborted) return "failed";
        if (statusCode(err) !== 409) this.log.warn({ ...this.fields, ...errorFields(err) }, "lease renewal failed");
        // 409: the Lease changed under us; read it and find out whether it is still ours.
      }
    }

    let current: k8s.V1Lease;
    try {
      current = await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, opts());
    } catch (err) {
      if (signal.aborted) return "failed";
      if (statusCode(err) === 404) return this.create(started, opts(), signal);
      this.log.warn({ ...this.fields, ...errorFields(err) }, "cannot read lease");
      return "failed";
    }

    const record = recordOf(current);
    this.observe(current, record);
    const holder = record.holderIdentity;
    if (holder !== "" && holder !== this.identity) {
      const durationMs = (record.leaseDurationSeconds ?? this.leaseDurationSeconds) * 1000;
      if (now() < this.observedAt + durationMs) {
        if (this.leading) this.log.warn({ ...this.fields, holder }, "lease taken by another holder");
        return "held";
      }
      this.log.info({ ...this.fields, holder, leaseDurationSeconds: record.leaseDurationSeconds }, "lease expired, taking over");
    }

    try {
      const body = this.buildLease(current, record);
      this.wrote(await this.api.replaceNamespacedLease({ name: this.name, namespace: this.namespace, body, fieldManager: FIELD_MANAGER }, opts()), started);
      return "leader";
    } catch (err) {
      if (signal.aborted) return "failed";
      if (statusCode(err) === 409) {
        this.log.info({ ...this.fields }, "lease changed concurrently, will retry");
      } else {
        this.log.warn({ ...this.fields, ...errorFields(err) }, "cannot update lease");
      }
      return "failed";
    }
  }

  private async create(started: number, opts: k8s.ConfigurationOptions, signal: AbortSignal): Promise<Attempt> {
    const time = new k8s.V1MicroTime(Date.now());
    const body: k8s.V1Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.name, namespace: this.namespace },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseDurationSeconds,
        acquireTime: time,
        renewTime: time,
        leaseTransitions: 0,
      },
    };
    try {
      this.wrote(await this.api.createNamespacedLease({ namespace: this.namespace, body, fieldManager: FIELD_MANAGER }, opts), started);
      return "leader";
    } catch (err) {
      if (signal.aborted) return "failed";
      if (statusCode(err) === 409) {
        this.log.info({ ...this.fields }, "lease created concurrently, will retry");
      } else {
        this.log.warn({ ...this.fields, ...errorFields(err) }, "cannot create lease");
      }
      return "failed";
    }
  }

  /**
   * The Lease with our record, based on `base` (whose resourceVersion guards the write).
   * A holder change counts as a transition; a new term (not leading before) gets a new acquireTime.
   */
  private buildLease(base: k8s.V1Lease, record: LeaseRecord): k8s.V1Lease {
    const time = new Date();
    const sameHolder = record.holderIdentity === this.identity;
    return {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: metadataOf(base, this.name, this.namespace),
      spec: {
        ...base.spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: this.leaseDurationSeconds,
        acquireTime: sameHolder && this.leading ? microTime(record.acquireTime, time) : new k8s.V1MicroTime(time.getTime()),
        renewTime: new k8s.V1MicroTime(time.getTime()),
        leaseTransitions: sameHolder ? record.leaseTransitions : record.leaseTransitions + 1,
      },
    };
  }

  /** Remembers a Lease we wrote successfully; `started` is when the attempt began. */
  private wrote(lease: k8s.V1Lease, started: number): void {
    this.lease = lease;
    this.renewedAt = started;
    this.observe(lease, recordOf(lease));
  }

  /** Restarts the expiry clock when the record differs from the one observed before. */
  private observe(lease: k8s.V1Lease, record: LeaseRecord): void {
    this.lease = lease;
    const key = JSON.stringify(record);
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = now();
    }
  }

  /**
   * Gives the Lease up: no holder, a 1 s duration, renewTime now (like client-go's
   * ReleaseOnCancel), so the other replica takes it at its next attempt. Best effort.
   */
  private async release(): Promise<void> {
    for (let tries = 0; tries < 2 && this.lease; tries++) {
      const base = this.lease;
      const record = recordOf(base);
      if (record.holderIdentity !== this.identity) return; // not ours any more
      const time = new k8s.V1MicroTime(Date.now());
      const body: k8s.V1Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: metadataOf(base, this.name, this.namespace),
        spec: {
          ...base.spec,
          holderIdentity: undefined,
          leaseDurationSeconds: 1,
          acquireTime: time,
          renewTime: time,
          leaseTransitions: record.leaseTransitions,
        },
      };
      try {
        this.lease = await this.api.replaceNamespacedLease(
          { name: this.name, namespace: this.namespace, body, fieldManager: FIELD_MANAGER },
          requestOptions(this.renewDeadlineMs),
        );
        this.log.info({ ...this.fields }, "lease released");
        return;
      } catch (err) {
        if (statusCode(err) !== 409) {
          this.log.warn({ ...this.fields, ...errorFields(err) }, "cannot release lease");
          return;
        }
      }
      // 409: our cached copy is stale (e.g. a renewal cut short by the abort did land); reread.
      try {
        this.lease = await this.api.readNamespacedLease({ name: this.name, namespace: this.namespace }, requestOptions(this.renewDeadlineMs));
      } catch (err) {
        this.log.warn({ ...this.fields, ...errorFields(err) }, "cannot release lease");
        return;
      }
    }
  }
}
