// FqdnResolver against a real (in-process) authoritative DNS server over real UDP, with an
// injected clock so TTL expiry is exact and tests do not sleep.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { FqdnResolver, type FqdnResolverOptions } from "../../src/host/fqdns.js";
import { startDnsServer, type DnsServer } from "../support/dns-server.js";

const T0 = 1_700_000_000_000;
let dns: DnsServer;
let clock = T0;

function resolver(opts: FqdnResolverOptions = {}): FqdnResolver {
  // One try with a short timeout so "the server stops answering" costs a fraction of a second.
  return new FqdnResolver({ servers: [`127.0.0.1:${dns.port}`], now: () => clock, timeoutMs: 100, tries: 1, ...opts });
}

/** Queries the server saw for a name (A and AAAA each count one). */
const asked = (name: string) => dns.queries.get(name) ?? 0;
const at = (seconds: number) => (clock = T0 + seconds * 1000);

before(async () => {
  dns = await startDnsServer();
});

after(async () => {
  await dns.close();
});

beforeEach(() => {
  dns.zone.clear();
  dns.queries.clear();
  dns.mode = "answer";
  clock = T0;
});

describe("FqdnResolver", () => {
  it("resolves A and AAAA records, including names with only one family", async () => {
    dns.zone.set("both.test", { a: ["192.0.2.20", "192.0.2.3"], aaaa: ["2001:db8::b", "2001:db8::a"], ttl: 120 });
    dns.zone.set("v4only.test", { a: ["198.51.100.7"], ttl: 120 });
    dns.zone.set("v6only.test", { aaaa: ["2001:db8:6::1"], ttl: 120 });
    const r = resolver();
    assert.equal(await r.refresh(["both.test", "v4only.test", "v6only.test"]), true);
    assert.deepEqual(
      r.snapshot(),
      new Map([
        ["both.test", ["192.0.2.20", "192.0.2.3", "2001:db8::a", "2001:db8::b"]],
        ["v4only.test", ["198.51.100.7"]],
        ["v6only.test", ["2001:db8:6::1"]],
      ]),
    );
    assert.deepEqual(dns.queries, new Map([["both.test", 2], ["v4only.test", 2], ["v6only.test", 2]]));
  });

  it("asks again only once the server's TTL has passed", async () => {
    dns.zone.set("ttl.test", { a: ["192.0.2.1"], ttl: 120 });
    const r = resolver();
    assert.equal(await r.refresh(["ttl.test"]), true);
    assert.equal(asked("ttl.test"), 2);
    at(119.999);
    assert.equal(await r.refresh(["ttl.test"]), false);
    assert.equal(asked("ttl.test"), 2, "no query before expiry");
    at(120);
    assert.equal(await r.refresh(["ttl.test"]), false, "same addresses: unchanged");
    assert.equal(asked("ttl.test"), 4, "re-queried at expiry");
    assert.deepEqual(r.snapshot(), new Map([["ttl.test", ["192.0.2.1"]]]));
  });

  it("reports a change only when the addresses changed, not their order", async () => {
    dns.zone.set("moving.test", { a: ["192.0.2.1", "192.0.2.2"], ttl: 60 });
    const r = resolver();
    assert.equal(await r.refresh(["moving.test"]), true);
    dns.zone.set("moving.test", { a: ["192.0.2.2", "192.0.2.1"], ttl: 60 });
    at(60);
    assert.equal(await r.refresh(["moving.test"]), false);
    dns.zone.set("moving.test", { a: ["192.0.2.2"], aaaa: ["2001:db8::2"], ttl: 60 });
    at(120);
    assert.equal(await r.refresh(["moving.test"]), true);
    assert.deepEqual(r.snapshot(), new Map([["moving.test", ["192.0.2.2", "2001:db8::2"]]]));
    assert.equal(asked("moving.test"), 6);
  });

  it("gives no entry for NXDOMAIN or a name without addresses, and asks again after the minimum TTL", async () => {
    dns.zone.set("empty.test", { ttl: 300 });
    const r = resolver();
    assert.equal(await r.refresh(["nx.test", "empty.test"]), false);
    assert.deepEqual(r.snapshot(), new Map());
    assert.deepEqual(dns.queries, new Map([["nx.test", 2], ["empty.test", 2]]));
    at(4.999);
    await r.refresh(["nx.test", "empty.test"]);
    assert.equal(asked("nx.test"), 2, "negative answer cached until the minimum TTL");
    dns.zone.set("nx.test", { a: ["192.0.2.9"], ttl: 300 });
    at(5);
    assert.equal(await r.refresh(["nx.test", "empty.test"]), true);
    assert.deepEqual(r.snapshot(), new Map([["nx.test", ["192.0.2.9"]]]));
    assert.deepEqual(dns.queries, new Map([["nx.test", 4], ["empty.test", 4]]));
  });

  it("drops a name's addresses when the server says it no longer exists", async () => {
    dns.zone.set("gone.test", { a: ["192.0.2.5"], ttl: 30 });
    const r = resolver();
    assert.equal(await r.refresh(["gone.test"]), true);
    dns.zone.delete("gone.test");
    at(30);
    assert.equal(await r.refresh(["gone.test"]), true);
    assert.deepEqual(r.snapshot(), new Map());
    assert.equal(asked("gone.test"), 4);
  });

  it("keeps the last answer while the server does not answer, retrying after the minimum TTL", async () => {
    dns.zone.set("flaky.test", { a: ["192.0.2.1"], aaaa: ["2001:db8::1"], ttl: 600 });
    const r = resolver();
    assert.equal(await r.refresh(["flaky.test"]), true);
    dns.mode = "drop";
    dns.zone.set("flaky.test", { a: ["192.0.2.99"], ttl: 600 });
    at(600);
    assert.equal(await r.refresh(["flaky.test"]), false);
    assert.equal(asked("flaky.test"), 4, "the server was asked (and stayed silent)");
    assert.deepEqual(r.snapshot(), new Map([["flaky.test", ["192.0.2.1", "2001:db8::1"]]]));
    dns.mode = "servfail";
    at(604.999);
    assert.equal(await r.refresh(["flaky.test"]), false);
    assert.equal(asked("flaky.test"), 4, "no retry before the minimum TTL");
    at(605);
    assert.equal(await r.refresh(["flaky.test"]), false);
    assert.equal(asked("flaky.test"), 6, "retried after the minimum TTL, not the record's TTL");
    assert.deepEqual(r.snapshot(), new Map([["flaky.test", ["192.0.2.1", "2001:db8::1"]]]));
    dns.mode = "answer";
    at(610);
    assert.equal(await r.refresh(["flaky.test"]), true);
    assert.deepEqual(r.snapshot(), new Map([["flaky.test", ["192.0.2.99"]]]));
  });

  it("keeps the last answer when the server is gone altogether", async () => {
    const gone = await startDnsServer();
    gone.zone.set("closed.test", { a: ["192.0.2.44"], ttl: 10 });
    const r = new FqdnResolver({ servers: [`127.0.0.1:${gone.port}`], now: () => clock, timeoutMs: 100, tries: 1 });
    assert.equal(await r.refresh(["closed.test"]), true);
    assert.equal(gone.queries.get("closed.test"), 2);
    await gone.close();
    at(10);
    assert.equal(await r.refresh(["closed.test"]), false);
    assert.deepEqual(r.snapshot(), new Map([["closed.test", ["192.0.2.44"]]]));
  });

  it("keeps one family's last answer when only that family fails", async () => {
    dns.zone.set("half.test", { a: ["192.0.2.1"], aaaa: ["2001:db8::1"], ttl: 300 });
    const r = resolver();
    await r.refresh(["half.test"]);
    dns.zone.set("half.test", { a: ["192.0.2.2"], aaaa: ["2001:db8::2"], ttl: 300, servfail: ["a"] });
    at(300);
    assert.equal(await r.refresh(["half.test"]), true);
    assert.deepEqual(r.snapshot(), new Map([["half.test", ["192.0.2.1", "2001:db8::2"]]]));
    dns.zone.set("half.test", { a: ["192.0.2.2"], aaaa: ["2001:db8::2"], ttl: 300 });
    at(305);
    assert.equal(await r.refresh(["half.test"]), true, "the failed family is retried after the minimum TTL");
    assert.deepEqual(r.snapshot(), new Map([["half.test", ["192.0.2.2", "2001:db8::2"]]]));
    assert.equal(asked("half.test"), 6);
  });

  it("drops names no longer wanted and resolves them afresh if wanted again", async () => {
    dns.zone.set("keep.test", { a: ["192.0.2.1"], ttl: 300 });
    dns.zone.set("drop.test", { a: ["192.0.2.2"], ttl: 300 });
    const r = resolver();
    assert.equal(await r.refresh(["keep.test", "drop.test"]), true);
    assert.equal(await r.refresh(["keep.test"]), true, "the snapshot lost a name");
    assert.deepEqual(r.snapshot(), new Map([["keep.test", ["192.0.2.1"]]]));
    assert.equal(await r.refresh(["keep.test"]), false);
    assert.equal(await r.refresh(["keep.test", "drop.test"]), true);
    assert.deepEqual(r.snapshot(), new Map([["keep.test", ["192.0.2.1"]], ["drop.test", ["192.0.2.2"]]]));
    assert.deepEqual(dns.queries, new Map([["keep.test", 2], ["drop.test", 4]]));
  });

  it("shares lookups between overlapping refreshes and lets the latest set of names win", async () => {
    dns.zone.set("shared.test", { a: ["192.0.2.1"], ttl: 300 });
    dns.zone.set("late.test", { a: ["192.0.2.2"], ttl: 300 });
    const r = resolver();
    const first = r.refresh(["shared.test", "late.test"]);
    const second = r.refresh(["shared.test"]);
    assert.deepEqual(await Promise.all([first, second]), [true, true]);
    assert.deepEqual(r.snapshot(), new Map([["shared.test", ["192.0.2.1"]]]), "late.test was dropped while in flight");
    assert.equal(asked("shared.test"), 2, "asked once for both refreshes");
  });

  it("clamps TTLs: 0 counts as the minimum, huge TTLs as the maximum", async () => {
    dns.zone.set("zero.test", { a: ["192.0.2.1"], ttl: 0 });
    dns.zone.set("huge.test", { a: ["192.0.2.2"], ttl: 2 ** 31 - 1 });
    const r = resolver();
    await r.refresh(["zero.test", "huge.test"]);
    at(4.999);
    await r.refresh(["zero.test", "huge.test"]);
    assert.deepEqual(dns.queries, new Map([["zero.test", 2], ["huge.test", 2]]));
    at(5);
    await r.refresh(["zero.test", "huge.test"]);
    assert.deepEqual(dns.queries, new Map([["zero.test", 4], ["huge.test", 2]]));
    at(3599.999);
    dns.queries.clear();
    await r.refresh(["huge.test"]);
    assert.equal(asked("huge.test"), 0);
    at(3600);
    await r.refresh(["huge.test"]);
    assert.equal(asked("huge.test"), 2);
  });

  it("honours configured TTL bounds and rejects impossible ones", async () => {
    dns.zone.set("short.test", { a: ["192.0.2.1"], ttl: 10 });
    dns.zone.set("long.test", { a: ["192.0.2.2"], ttl: 600 });
    const r = resolver({ minTtlSeconds: 30, maxTtlSeconds: 60 });
    await r.refresh(["short.test", "long.test"]);
    at(29.999);
    await r.refresh(["short.test", "long.test"]);
    assert.deepEqual(dns.queries, new Map([["short.test", 2], ["long.test", 2]]));
    at(30);
    await r.refresh(["short.test", "long.test"]);
    assert.deepEqual(dns.queries, new Map([["short.test", 4], ["long.test", 2]]));
    at(60);
    await r.refresh(["short.test", "long.test"]);
    assert.deepEqual(dns.queries, new Map([["short.test", 6], ["long.test", 4]]));
    assert.throws(() => resolver({ minTtlSeconds: 0 }), RangeError);
    assert.throws(() => resolver({ minTtlSeconds: 60, maxTtlSeconds: 30 }), RangeError);
  });
});
