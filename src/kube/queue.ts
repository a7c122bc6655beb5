// A de-duplicating work queue with per-key rate-limited retries (controller-runtime's
// workqueue): a key is processed by one worker at a time; adding a key that is queued is a
// no-op; adding one that is being processed queues it again once it is done.
import { Backoff } from "./backoff.js";

/** What a reconcile asks for next (kube-runtime's Action). */
export type Action = { requeueAfterMs: number } | "done";

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirtyWhileProcessing = new Set<string>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly failures = new Map<string, Backoff>();
  private waiters: ((key: string | null) => void)[] = [];
  private closed = false;

  constructor(
    private readonly baseRetryMs = 200,
    private readonly maxRetryMs = 60_000,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  add(key: string): void {
    if (this.closed) return;
    if (this.processing.has(key)) {
      this.dirtyWhileProcessing.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter) {
      this.processing.add(key);
      waiter(key);
      return;
    }
    this.queued.add(key);
    this.queue.push(key);
  }

  addAfter(key: string, ms: number): void {
    if (this.closed) return;
    if (this.timers.has(key)) return;
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    t.unref();
    this.timers.set(key, t);
  }

  /** Retry later, backing off per key. */
  addRateLimited(key: string): number {
    let b = this.failures.get(key);
    if (!b) {
      b = new Backoff(this.baseRetryMs, this.maxRetryMs);
      this.failures.set(key, b);
    }
    const ms = b.next();
    this.addAfter(key, ms);
    return ms;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  /** Next key to process (the worker must call done), or null once shut down. */
  get(): Promise<string | null> {
    if (this.closed) return Promise.resolve(null);
    const key = this.queue.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  done(key: string): void {
    this.processing.delete(key);
    if (this.dirtyWhileProcessing.delete(key)) this.add(key);
  }

  shutdown(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const w of this.waiters) w(null);
    this.waiters = [];
  }
}

/** Runs `workers` loops calling reconcile for each key until the queue shuts down. */
export async function runWorkers(queue: WorkQueue, workers: number, reconcile: (key: string) => Promise<Action>, onError: (key: string, e: unknown, retryMs: number) => void): Promise<void> {
  const worker = async () => {
    for (;;) {
      const key = await queue.get();
      if (key === null) return;
      try {
        const action = await reconcile(key);
        queue.forget(key);
        if (action !== "done") queue.addAfter(key, action.requeueAfterMs);
      } catch (e) {
        onError(key, e, queue.addRateLimited(key));
      } finally {
        queue.done(key);
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}
