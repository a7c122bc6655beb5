import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue, runWorkers } from "../../src/kube/queue.js";
import { Backoff } from "../../src/kube/backoff.js";

describe("work queue", () => {
  it("de-duplicates queued keys and keeps order", async () => {
    const q = new WorkQueue();
    for (const k of ["a", "b", "a", "c", "b"]) q.add(k);
    assert.equal(q.depth, 3);
    assert.deepEqual([await q.get(), await q.get(), await q.get()], ["a", "b", "c"]);
  });

  it("re-queues a key added while it is being processed, once, after done", async () => {
    const q = new WorkQueue();
    q.add("a");
    const k = await q.get();
    q.add("a");
    q.add("a");
    assert.equal(q.depth, 0, "not handed out twice at once");
    q.done(k ?? "");
    assert.equal(q.depth, 1);
    assert.equal(await q.get(), "a");
  });

  it("retries failures with growing, jittered delays and forgets on success", async () => {
    const q = new WorkQueue(10, 1000);
    let calls = 0;
    const times: number[] = [];
    const start = Date.now();
    const errors: number[] = [];
    q.add("k");
    const run = runWorkers(
      q,
      2,
      async () => {
        times.push(Date.now() - start);
        calls++;
        if (calls < 4) throw new Error("transient");
        q.shutdown();
        return "done";
      },
      (_key, _e, ms) => errors.push(ms),
    );
    await run;
    assert.equal(calls, 4);
    assert.equal(errors.length, 3);
    assert.ok((errors[2] ?? 0) > (errors[0] ?? 0), `backoff grows: ${errors.join(",")}`);
    assert.ok(errors.every((ms) => ms >= 5 && ms <= 1000));
  });

  it("requeues after the delay a reconcile asks for", async () => {
    const q = new WorkQueue();
    let calls = 0;
    const start = Date.now();
    q.add("k");
    await runWorkers(
      q,
      1,
      async () => {
        calls++;
        if (calls === 2) {
          q.shutdown();
          return "done";
        }
        return { requeueAfterMs: 150 };
      },
      () => undefined,
    );
    assert.equal(calls, 2);
    assert.ok(Date.now() - start >= 140);
  });

  it("backoff is capped and reset", () => {
    const b = new Backoff(100, 1000, () => 1);
    assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000]);
    b.reset();
    assert.equal(b.next(), 100);
  });
});
