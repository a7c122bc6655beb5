// Leader election against a real kube-apiserver, with short timings (lease 3 s, renew deadline
// 2 s, retry 500 ms). Times of day written into the Lease (renewTime) come from this machine's
// clock, the same clock the test reads, so they serve as exact reference points.
import { after, afterEach, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import * as k8s from "@kubernetes/client-node";
import { pino } from "pino";
import { LeaderElector, type LeaderElectionLog, type LeaderElectorOptions } from "../../src/kube/lease.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const NS = "default";
const LEASE_S = 3;
const LEASE_MS = LEASE_S * 1000;
const RENEW_MS = 2000;
const RETRY_MS = 500;
/** Allowance for request round trips and timer lateness on a loaded machine. */
const SLACK_MS = 250;

const mono = (): number => performance.now();

interface ElectionEvent {
  kind: "start" | "stop";
  mono: number;
  wall: number;
}

interface Candidate {
  id: string;
  elector: LeaderElector;
  events: ElectionEvent[];
  /** Set when run() settled; "rejected" would be a bug. */
  settled: "resolved" | "rejected" | undefined;
  done: Promise<void>;
  abort(): void;
}

const candidates = new Set<Candidate>();

function launch(
  kc: k8s.KubeConfig,
  lease: string,
  id: string,
  extra: { log?: LeaderElectionLog; onStarted?: () => void } = {},
): Candidate {
  const events: ElectionEvent[] = [];
  const controller = new AbortController();
  const opts: LeaderElectorOptions = {
    kc,
    namespace: NS,
    name: lease,
    identity: id,
    leaseDurationSeconds: LEASE_S,
    renewDeadlineMs: RENEW_MS,
    retryPeriodMs: RETRY_MS,
    onStartedLeading: () => {
      events.push({ kind: "start", mono: mono(), wall: Date.now() });
      extra.onStarted?.();
    },
    onStoppedLeading: () => events.push({ kind: "stop", mono: mono(), wall: Date.now() }),
  };
  if (extra.log) opts.log = extra.log;
  const elector = new LeaderElector(opts);
  const c: Candidate = {
    id,
    elector,
    events,
    settled: undefined,
    done: Promise.resolve(),
    abort: () => controller.abort(),
  };
  c.done = elector.run(controller.signal).then(
    () => { c.settled = "resolved"; },
    (err: unknown) => { c.settled = "rejected"; throw err; },
  );
  candidates.add(c);
  return c;
}

async function stopAll(): Promise<void> {
  const all = [...candidates];
  candidates.clear();
  for (const c of all) c.abort();
  await Promise.all(all.map((c) => c.done));
}

async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = mono() + timeoutMs;
  while (!cond()) {
    if (mono() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A Lease time as epoch ms (read back it is a string, though typed as a Date subclass). */
function ms(value: unknown): number {
  if (value instanceof Date) return value.getTime();
  if (typeof value === "string") return Date.parse(value);
  return Number.NaN;
}

const kinds = (c: Candidate): string => c.events.map((e) => e.kind).join(",");

/**
 * A TCP forwarder in front of the API server. blackhole() simulates a partition: open
 * connections stop carrying data (requests hang, nothing is refused) and new connections are
 * accepted and ignored. forward() heals it.
 */
class TcpProxy {
  private readonly server: Server;
  private blackholed = false;
  private readonly conns = new Set<{ client: Socket; upstream: Socket | undefined }>();

  private constructor(private readonly host: string, private readonly port: number) {
    this.server = createServer((client) => this.accept(client));
  }

  static async start(target: URL): Promise<TcpProxy> {
    const proxy = new TcpProxy(target.hostname, Number(target.port));
    await new Promise<void>((resolve, reject) => {
      proxy.server.once("error", reject);
      proxy.server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get url(): string {
    return `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private accept(client: Socket): void {
    const conn: { client: Socket; upstream: Socket | undefined } = { client, upstream: undefined };
    this.conns.add(conn);
    client.on("error", () => client.destroy());
    client.on("close", () => {
      conn.upstream?.destroy();
      this.conns.delete(conn);
    });
    if (this.blackholed) {
      client.resume(); // read and discard
      return;
    }
    const upstream = connect(this.port, this.host);
    conn.upstream = upstream;
    upstream.on("error", () => upstream.destroy());
    upstream.on("close", () => {
      if (conn.upstream === upstream) client.destroy();
    });
    client.pipe(upstream);
    upstream.pipe(client);
  }

  blackhole(): void {
    this.blackholed = true;
    for (const conn of this.conns) {
      const upstream = conn.upstream;
      if (upstream) {
        conn.upstream = undefined;
        conn.client.unpipe(upstream);
        upstream.unpipe(conn.client);
        upstream.destroy();
      }
      conn.client.resume();
    }
  }

  forward(): void {
    this.blackholed = false;
    for (const conn of this.conns) if (!conn.upstream) conn.client.destroy();
  }

  async close(): Promise<void> {
    for (const conn of this.conns) {
      conn.upstream?.destroy();
      conn.client.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** A copy of kc (same CA and token) that talks to another server URL. */
function kubeConfigVia(kc: k8s.KubeConfig, server: string): k8s.KubeConfig {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster || !user) throw new Error("kubeconfig without a current cluster or user");
  const out = new k8s.KubeConfig();
  out.loadFromClusterAndUser({ ...cluster, server }, user);
  return out;
}

describe("Lease leader election on a real kube-apiserver", () => {
  let cluster: Cluster;
  let coord: k8s.CoordinationV1Api;

  const readLease = (name: string): Promise<k8s.V1Lease> => coord.readNamespacedLease({ name, namespace: NS });

  /** Writes a Lease record as a third party would, retrying on 409 (the leader renews meanwhile). */
  async function overwrite(name: string, spec: (cur: k8s.V1LeaseSpec) => k8s.V1LeaseSpec): Promise<k8s.V1Lease> {
    for (;;) {
      const cur = await readLease(name);
      const body: k8s.V1Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace: NS, resourceVersion: cur.metadata?.resourceVersion },
        spec: spec(cur.spec ?? {}),
      };
      try {
        return await coord.replaceNamespacedLease({ name, namespace: NS, body, fieldManager: "nftegress-test" });
      } catch (err) {
        if (err instanceof k8s.ApiException && err.code === 409) continue;
        throw err;
      }
    }
  }

  before(async () => {
    cluster = await startCluster();
    coord = cluster.kc.makeApiClient(k8s.CoordinationV1Api);
  });
  afterEach(stopAll);
  after(async () => {
    await stopAll();
    await cluster?.stop();
  });

  it("rejects timings that could let two replicas lead at once", () => {
    const base = { kc: cluster.kc, namespace: NS, name: "x", identity: "x", onStartedLeading: () => {}, onStoppedLeading: () => {} };
    assert.throws(() => new LeaderElector({ ...base, leaseDurationSeconds: 2, renewDeadlineMs: 2000 }), /renewDeadlineMs < leaseDurationSeconds/);
    assert.throws(() => new LeaderElector({ ...base, renewDeadlineMs: 1000, retryPeriodMs: 1000 }), /retryPeriodMs < renewDeadlineMs/);
    assert.throws(() => new LeaderElector({ ...base, identity: "" }), /identity/);
    assert.doesNotThrow(() => new LeaderElector(base));
  });

  it("(a) of two electors exactly one leads, and keeps renewing", async (t) => {
    const a = launch(cluster.kc, "lease-a", "a");
    const b = launch(cluster.kc, "lease-a", "b");
    await waitFor("a leader", () => a.elector.isLeader() || b.elector.isLeader(), 3 * RETRY_MS);
    const [leader, follower] = a.elector.isLeader() ? [a, b] : [b, a];

    const first = await readLease("lease-a");
    const until = mono() + 6 * RETRY_MS;
    while (mono() < until) {
      assert.equal(leader.elector.isLeader(), true, "the leader kept leading");
      assert.equal(follower.elector.isLeader(), false, "the follower never led");
      await sleep(20);
    }
    const last = await readLease("lease-a");

    assert.equal(kinds(leader), "start");
    assert.equal(kinds(follower), "");
    for (const l of [first, last]) {
      assert.equal(l.spec?.holderIdentity, leader.id);
      assert.equal(l.spec?.leaseDurationSeconds, LEASE_S);
      assert.equal(l.spec?.leaseTransitions, 0, "created by the first leader: no transition yet");
    }
    t.diagnostic(`leader ${leader.id}; renewTime advanced ${ms(last.spec?.renewTime) - ms(first.spec?.renewTime)} ms over a ${6 * RETRY_MS} ms window`);
    assert.equal(ms(last.spec?.acquireTime), ms(first.spec?.acquireTime), "renewals keep acquireTime");
    // Renewed every retry period: over the 3 s window renewTime advanced by about 3 s.
    const advanced = ms(last.spec?.renewTime) - ms(first.spec?.renewTime);
    assert.ok(advanced >= 6 * RETRY_MS - 2 * RETRY_MS && advanced <= 6 * RETRY_MS + RETRY_MS + SLACK_MS, `renewTime advanced ${advanced} ms`);
    assert.ok(Math.abs(Date.now() - ms(last.spec?.renewTime)) < RETRY_MS + SLACK_MS, "renewTime is the current time");
  });

  it("(b0) a leader shutting down releases the Lease", async () => {
    const a = launch(cluster.kc, "lease-b0", "a");
    await waitFor("a to lead", () => a.elector.isLeader(), 2 * RETRY_MS);
    const held = await readLease("lease-b0");
    a.abort();
    await a.done;
    assert.equal(a.settled, "resolved");
    assert.equal(a.elector.isLeader(), false);
    assert.equal(kinds(a), "start,stop");
    const released = await readLease("lease-b0");
    assert.equal(released.spec?.holderIdentity ?? "", "");
    assert.equal(released.spec?.leaseDurationSeconds, 1);
    assert.equal(released.spec?.leaseTransitions, held.spec?.leaseTransitions);
    assert.ok(ms(released.spec?.renewTime) >= ms(held.spec?.renewTime));
  });

  it("(b) after a graceful shutdown of the leader the other takes over within two retry periods", async (t) => {
    const a = launch(cluster.kc, "lease-b", "a");
    await waitFor("a to lead", () => a.elector.isLeader(), 2 * RETRY_MS);
    const b = launch(cluster.kc, "lease-b", "b");
    await sleep(3.5 * RETRY_MS); // half a period off b's attempts: a handover takes about that
    assert.equal(b.elector.isLeader(), false);
    const before = await readLease("lease-b");
    assert.equal(before.spec?.holderIdentity, "a");

    const abortedAt = mono();
    a.abort();
    await a.done;
    assert.equal(a.settled, "resolved");
    assert.equal(kinds(a), "start,stop");
    await waitFor("b to lead", () => b.elector.isLeader(), 2 * RETRY_MS);
    const start = b.events[0];
    assert.ok(start);
    const handover = start.mono - abortedAt;
    t.diagnostic(`handover ${handover.toFixed(0)} ms after abort`);
    assert.ok(handover < 2 * RETRY_MS, `handover took ${handover} ms`);
    // a stopped before b started.
    const aStop = a.events[1];
    assert.ok(aStop && aStop.mono <= start.mono);

    const after = await readLease("lease-b");
    assert.equal(after.spec?.holderIdentity, "b");
    assert.equal(after.spec?.leaseDurationSeconds, LEASE_S, "the new holder writes its own duration back");
    assert.equal(after.spec?.leaseTransitions, (before.spec?.leaseTransitions ?? 0) + 1);
    assert.ok(ms(after.spec?.acquireTime) > ms(before.spec?.acquireTime));
    assert.equal(kinds(b), "start");
  });

  it("(c) a partitioned leader stops at its renew deadline; the other takes over only once the lease expired", async (t) => {
    const proxy = await TcpProxy.start(new URL(cluster.server));
    const logs: Array<{ level: number; msg: string }> = [];
    const log = pino({ level: "info", base: null }, { write: (line: string) => { logs.push(JSON.parse(line) as { level: number; msg: string }); } });
    try {
      const a = launch(kubeConfigVia(cluster.kc, proxy.url), "lease-c", "a", { log });
      await waitFor("a to lead", () => a.elector.isLeader(), 2 * RETRY_MS);
      let aLeadingWhenBStarted: boolean | undefined;
      const b = launch(cluster.kc, "lease-c", "b", { onStarted: () => { aLeadingWhenBStarted = a.elector.isLeader(); } });
      await sleep(3 * RETRY_MS);
      assert.equal(b.elector.isLeader(), false);

      // Cut the network just after one of a's renewals landed (and its response reached a: the
      // test can read the new renewTime before that), so no renewal is in flight.
      const seen = ms((await readLease("lease-c")).spec?.renewTime);
      let lastRenew = seen;
      while (lastRenew === seen) {
        await sleep(5);
        lastRenew = ms((await readLease("lease-c")).spec?.renewTime);
      }
      await sleep(50);
      proxy.blackhole();
      const cutAt = Date.now();

      await waitFor("b to lead", () => b.elector.isLeader(), LEASE_MS + 2 * RETRY_MS + 1000);
      const bStart = b.events[0];
      const aStop = a.events[1];
      assert.ok(bStart && aStop, `events a=${kinds(a)} b=${kinds(b)}`);
      assert.ok(cutAt - lastRenew < RETRY_MS, "the cut came before a's next renewal");

      // a gave up exactly at its renew deadline, measured from its last successful renewal ...
      const aGaveUp = aStop.wall - lastRenew;
      assert.ok(aGaveUp >= RENEW_MS - 20 && aGaveUp <= RENEW_MS + SLACK_MS, `a stopped ${aGaveUp} ms after its last renewal`);
      // ... and b took over no earlier than a full lease duration after that renewal, and promptly then.
      const bTookOver = bStart.wall - lastRenew;
      t.diagnostic(`after a's last renewal: a stopped at +${aGaveUp} ms, b started at +${bTookOver} ms`);
      assert.ok(bTookOver >= LEASE_MS, `b took over ${bTookOver} ms after a's last renewal`);
      assert.ok(bTookOver <= LEASE_MS + 2 * RETRY_MS + SLACK_MS, `b took over ${bTookOver} ms after a's last renewal`);
      // Never two leaders.
      assert.equal(aLeadingWhenBStarted, false);
      assert.ok(aStop.mono < bStart.mono);

      const held = await readLease("lease-c");
      assert.equal(held.spec?.holderIdentity, "b");
      assert.equal(held.spec?.leaseTransitions, 1);

      // a never threw; it keeps campaigning through the errors, and after the partition heals it
      // sees b's live lease and stays a follower.
      assert.equal(a.settled, undefined);
      proxy.forward();
      await sleep(3 * RETRY_MS + RETRY_MS);
      assert.equal(a.elector.isLeader(), false);
      assert.equal(b.elector.isLeader(), true);
      assert.equal(kinds(a), "start,stop");
      assert.equal(kinds(b), "start");
      assert.equal((await readLease("lease-c")).spec?.holderIdentity, "b");

      // The failures were logged as warnings with static messages.
      const warnings = new Set(logs.filter((l) => l.level === 40).map((l) => l.msg));
      assert.ok(warnings.has("lease not renewed within the renew deadline"), [...warnings].join(" | "));
      assert.ok(warnings.has("lease renewal failed"), [...warnings].join(" | "));
      a.abort();
      await a.done;
      assert.equal(a.settled, "resolved");
    } finally {
      await stopAll();
      await proxy.close();
    }
  });

  it("(d) a leader whose Lease is taken over through the API stops leading at once", async (t) => {
    const a = launch(cluster.kc, "lease-d", "a");
    await waitFor("a to lead", () => a.elector.isLeader(), 2 * RETRY_MS);
    await sleep(2 * RETRY_MS);

    const stamp = new k8s.V1MicroTime(Date.now());
    const intruded = await overwrite("lease-d", (cur) => ({
      holderIdentity: "intruder",
      leaseDurationSeconds: LEASE_S,
      acquireTime: stamp,
      renewTime: stamp,
      leaseTransitions: (cur.leaseTransitions ?? 0) + 1,
    }));
    const intrudedAt = mono();
    await waitFor("a to stop leading", () => !a.elector.isLeader(), RETRY_MS + SLACK_MS);
    const stop = a.events[1];
    assert.ok(stop && stop.kind === "stop");
    t.diagnostic(`a stopped ${(stop.mono - intrudedAt).toFixed(0)} ms after the intruder's write`);
    assert.ok(stop.mono - intrudedAt <= RETRY_MS + SLACK_MS);

    // a did not write over the intruder's record.
    const seen = await readLease("lease-d");
    assert.equal(seen.spec?.holderIdentity, "intruder");
    assert.equal(seen.metadata?.resourceVersion, intruded.metadata?.resourceVersion);

    // The intruder never renews: a takes the Lease again once it expired by a's own observation.
    await waitFor("a to lead again", () => a.elector.isLeader(), LEASE_MS + 2 * RETRY_MS + 1000);
    const again = a.events[2];
    assert.ok(again && again.kind === "start");
    const waited = again.wall - stamp.getTime();
    t.diagnostic(`a led again ${waited} ms after the intruder's write`);
    assert.ok(waited >= LEASE_MS, `a took over ${waited} ms after the intruder's write`);
    assert.ok(waited <= LEASE_MS + 2 * RETRY_MS + SLACK_MS, `a took over ${waited} ms after the intruder's write`);
    const back = await readLease("lease-d");
    assert.equal(back.spec?.holderIdentity, "a");
    assert.equal(back.spec?.leaseTransitions, (intruded.spec?.leaseTransitions ?? 0) + 1);
    assert.equal(kinds(a), "start,stop,start");
  });

  it("(e) expiry is judged by the local observation, not by the timestamps in the Lease", async (t) => {
    // A stale holder whose renewTime is an hour old, and one whose clock runs an hour ahead.
    const hour = 3_600_000;
    for (const [name, offset] of [["lease-e-past", -hour], ["lease-e-future", hour]] as const) {
      const t = new k8s.V1MicroTime(Date.now() + offset);
      await coord.createNamespacedLease({
        namespace: NS,
        fieldManager: "nftegress-test",
        body: {
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name, namespace: NS },
          spec: { holderIdentity: "ghost", leaseDurationSeconds: LEASE_S, acquireTime: t, renewTime: t, leaseTransitions: 5 },
        },
      });
    }
    const startedAt = mono();
    const past = launch(cluster.kc, "lease-e-past", "p");
    const future = launch(cluster.kc, "lease-e-future", "f");
    await waitFor("both to lead", () => past.elector.isLeader() && future.elector.isLeader(), LEASE_MS + 2 * RETRY_MS + 1000);
    for (const c of [past, future]) {
      const start = c.events[0];
      assert.ok(start);
      const waited = start.mono - startedAt;
      t.diagnostic(`${c.id} took over ${waited.toFixed(0)} ms after starting`);
      assert.ok(waited >= LEASE_MS, `${c.id} took over after ${waited} ms`);
      assert.ok(waited <= LEASE_MS + 2 * RETRY_MS + SLACK_MS, `${c.id} took over after ${waited} ms`);
    }
    for (const [name, id] of [["lease-e-past", "p"], ["lease-e-future", "f"]] as const) {
      const l = await readLease(name);
      assert.equal(l.spec?.holderIdentity, id);
      assert.equal(l.spec?.leaseTransitions, 6);
    }
  });
});
