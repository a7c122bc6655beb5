// The element audit: comparing a set's listed elements with the applied ones, the pacing of
// the audits, and the Syncer putting back what differs in one transaction, never from a
// listing a sync overlapped (with the recording executor; real nft in test/nft/agent.test.ts).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { SetAuditor } from "../../src/agent/setaudit.js";
import { Syncer } from "../../src/agent/syncer.js";
import { elementDrift, listedElements, type ElementDrift } from "../../src/nft/elements.js";
import type { NftJson } from "../../src/nft/executor.js";
import { RecordingNftExecutor } from "../../src/nft/fake.js";
import type { Ruleset } from "../../src/nft/ruleset.js";
import { parseAddress } from "../../src/net/cidr.js";

const v4 = (...a: string[]) => Uint32Array.from(a.map((s) => { const p = parseAddress(s); assert.equal(p?.family, 4); return Number(p?.addr); }));
const listing = (name: string, elem: unknown[]): NftJson => ({ nftables: [{ metainfo: { version: "1.0.6" } }, { set: { family: "inet", table: "nftegress", name, type: "ipv4_addr", elem } }] });

describe("element drift", () => {
  it("finds IPv4 elements missing and foreign, compared as numbers", () => {
    const d = elementDrift(v4("1.2.3.0", "10.0.0.0", "10.1.0.0"), ["10.0.0.0", "5.5.5.5", "1.2.3.0"]);
    assert.deepEqual(d, { missing: ["10.1.0.0"], extra: ["5.5.5.5"] });
    assert.deepEqual(elementDrift(v4("10.0.0.0", "1.2.3.0"), ["1.2.3.0", "10.0.0.0"]), { missing: [], extra: [] }, "order does not matter");
  });

  it("compares IPv6 elements in canonical form", () => {
    const d = elementDrift(["2001:db8::", "2001:db8:0:1::"], ["2001:0db8:0000:0000::", "2001:db8:0:2::"]);
    assert.deepEqual(d, { missing: ["2001:db8:0:1::"], extra: ["2001:db8:0:2::"] });
  });

  it("reads plain and object elements of the named set; null when the set is absent", () => {
    const json = listing("s4", ["192.0.2.10", { elem: { val: "192.0.2.99", timeout: 30 } }]);
    assert.deepEqual(listedElements(json, "s4"), ["192.0.2.10", "192.0.2.99"]);
    assert.deepEqual(listedElements(listing("s4", []), "s4"), []);
    assert.equal(listedElements(json, "other"), null);
    assert.equal(listedElements(null, "s4"), null);
  });
});

describe("set auditor", () => {
  type Sets = { name: string; size: number }[];
  function fake(sets: Sets, drift: Record<string, ElementDrift>, opts: { msPerElement?: number; msPerList?: number; dynamic?: number } = {}) {
    const calls: { names: string[]; whole: boolean }[] = [];
    let clock = 0;
    const syncer = {
      staticSets: () => sets.map((s) => ({ name: s.name, keyType: "ipv4_addr", dynamic: false, elements: new Uint32Array(s.size) })),
      auditSets: async (names: readonly string[], whole = false) => {
        calls.push({ names: [...names], whole });
        const elements = names.reduce((n, x) => n + (sets.find((s) => s.name === x)?.size ?? 0), 0);
        const listingMs = whole ? [elements * (opts.msPerElement ?? 0.004) + (opts.msPerList ?? 4)] : names.map((x) => (sets.find((s) => s.name === x)?.size ?? 0) * (opts.msPerElement ?? 0.004) + (opts.msPerList ?? 4));
        clock += listingMs.reduce((a, b) => a + b, 0);
        return { drifts: new Map(names.map((n) => [n, drift[n] ?? { missing: [], extra: [] }])), dynamicElements: whole ? (opts.dynamic ?? 0) : 0, listingMs, startupMs: opts.msPerList ?? 4 };
      },
    };
    return { syncer, calls, now: () => clock, advance: (ms: number) => (clock += ms) };
  }

  it("audits every small set on each tick in one listing, however many sets", async () => {
    const sets = Array.from({ length: 93 }, (_, i) => ({ name: `s${i}`, size: 10 }));
    const f = fake(sets, { s92: { missing: ["192.0.2.1"], extra: [] } });
    const auditor = new SetAuditor(f.syncer, { now: f.now });
    assert.deepEqual(await auditor.tick(), [{ set: "s92", drift: { missing: ["192.0.2.1"], extra: [] } }], "the last set is repaired on the first tick");
    assert.equal(f.calls.length, 1);
    assert.equal(f.calls[0]?.whole, true);
    assert.equal(f.calls[0]?.names.length, 93);
    f.advance(5_000);
    await auditor.tick();
    assert.equal(f.calls.length, 2, "and again on the next drift tick (a few ms of listing at 1 % waits well under 5 s)");
  });

  it("lists a table up to the budget in one listing, paced to 1 % of a core above the unpaced size", async () => {
    const f = fake([{ name: "a", size: 30_000 }, { name: "b", size: 30_000 }, { name: "c", size: 20 }], { c: { missing: [], extra: ["198.51.100.7"] } });
    const auditor = new SetAuditor(f.syncer, { now: f.now });
    assert.deepEqual(await auditor.tick(), [{ set: "c", drift: { missing: [], extra: ["198.51.100.7"] } }]);
    assert.deepEqual(f.calls, [{ names: ["a", "b", "c"], whole: true }]);
    // 60,020 elements at 4 us + 1 listing = 241 ms: the next waits 99 x that, about 24 s.
    f.advance(20_000);
    await auditor.tick();
    assert.equal(f.calls.length, 1, "not due");
    f.advance(5_000);
    await auditor.tick();
    assert.equal(f.calls.length, 2);
  });

  it("lists large sets one at a time within the budget, a set over the budget alone, paced to 1 % of a core", async () => {
    const sets = [{ name: "big", size: 70_000 }, { name: "a", size: 5_000 }, { name: "b", size: 5_000 }, { name: "c", size: 15_000 }];
    const f = fake(sets, { c: { missing: [], extra: ["198.51.100.7"] } });
    const auditor = new SetAuditor(f.syncer, { now: f.now, budget: 20_000 });
    assert.deepEqual(await auditor.tick(), []);
    assert.deepEqual(f.calls.at(-1), { names: ["big"], whole: false }, "a set over the budget is listed alone");
    // 70k elements at 4 us + 4 ms = 284 ms of listing: at 1 % the next audit waits 99 x that.
    f.advance(27_000);
    assert.deepEqual(await auditor.tick(), [], "not due yet");
    assert.equal(f.calls.length, 1);
    f.advance(1_200);
    await auditor.tick();
    assert.deepEqual(f.calls.at(-1), { names: ["a", "b"], whole: false }, "several sets fill the budget");
    f.advance(10_000);
    assert.deepEqual(await auditor.tick(), [{ set: "c", drift: { missing: [], extra: ["198.51.100.7"] } }]);
    f.advance(10_000);
    await auditor.tick();
    assert.deepEqual(f.calls.at(-1)?.names, ["big"], "round robin");
  });

  it("charges a tick of many small listings for their elements and one nft start-up, not one per set", async () => {
    // 200 sets of 1,000 elements, budget 20k: 20 sets per tick. Each listing costs 10 ms of
    // start-up (what the drift check's terse listing took) plus 4 us per element: 20 x 14 ms =
    // 280 ms, of which 190 ms are further start-ups.
    const many = fake(Array.from({ length: 200 }, (_, i) => ({ name: `m${i}`, size: 1_000 })), {}, { msPerList: 10 });
    const auditor = new SetAuditor(many.syncer, { now: many.now, budget: 20_000 });
    /** The waits between audits: the clock stepped by 100 ms, a tick at each step. */
    const gaps = async (f: ReturnType<typeof fake>, a: SetAuditor, audits: number): Promise<number[]> => {
      const at: number[] = [];
      while (at.length < audits) {
        const n = f.calls.length;
        const t = f.now();
        await a.tick();
        if (f.calls.length > n) at.push(t);
        f.advance(100);
      }
      return at.slice(1).map((t, i) => t - (at[i] ?? 0));
    };
    const waits = await gaps(many, auditor, 11);
    // The same 20k elements in two sets of 10k per tick: 2 x (10 + 40) ms = 100 ms, charged 90 ms.
    const few = fake(Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, size: 10_000 })), {}, { msPerList: 10 });
    const [waitedFew = 0] = await gaps(few, new SetAuditor(few.syncer, { now: few.now, budget: 20_000 }), 2);
    const median = [...waits].sort((a, b) => a - b)[5] ?? 0;
    // Charged 20 x 4 ms of elements + 10 ms of one start-up = 90 ms: the wait after the listing
    // is 99 x 90 ms, plus the 280 ms the listing itself took.
    assert.ok(Math.abs(median - 9_190) <= 200, `a tick of 20 small sets waits about as long as the same elements in 2 sets: ${median} ms`);
    assert.ok(Math.abs(waitedFew - median) <= 200, `2 sets of 10k: ${waitedFew} ms, 20 sets of 1k: ${median} ms`);
  });

  it("lists the static sets one by one for a while when the whole-table listing carried many denial entries", async () => {
    const f = fake([{ name: "a", size: 10 }, { name: "b", size: 10 }], {}, { dynamic: 50_000 });
    const auditor = new SetAuditor(f.syncer, { now: f.now, budget: 20_000 });
    await auditor.tick();
    f.advance(60_000);
    await auditor.tick();
    assert.deepEqual(f.calls, [{ names: ["a", "b"], whole: true }, { names: ["a", "b"], whole: false }]);
  });
});

describe("Syncer.auditSet", () => {
  const ruleset = (elements: Uint32Array): Ruleset => ({ comment: "t", chains: [], counters: [], sets: [{ name: "s4", keyType: "ipv4_addr", dynamic: false, elements }, { name: "seen", keyType: "ipv4_addr", dynamic: true, elements: [] }] });

  it("puts back missing elements and deletes foreign ones in one transaction", async () => {
    const nft = new RecordingNftExecutor();
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset(v4("192.0.2.10", "192.0.2.20")));
    assert.deepEqual(syncer.staticSets().map((s) => s.name), ["s4"], "dynamic sets are not audited");
    nft.sets.set("s4", listing("s4", ["192.0.2.20", "198.51.100.7"]));
    const before = nft.applied.length;
    assert.deepEqual(await syncer.auditSet("s4"), { missing: ["192.0.2.10"], extra: ["198.51.100.7"] });
    assert.equal(nft.applied.length, before + 1, "one transaction");
    const script = nft.applied.at(-1) ?? "";
    assert.match(script, /delete element inet nftegress s4 \{ 198\.51\.100\.7 \}/);
    assert.match(script, /add element inet nftegress s4 \{ 192\.0\.2\.10 \}/);
    nft.sets.set("s4", listing("s4", ["192.0.2.20", "192.0.2.10"]));
    assert.deepEqual(await syncer.auditSet("s4"), { missing: [], extra: [] });
    assert.equal(nft.applied.length, before + 1, "nothing applied when the set matches");
    assert.equal(await syncer.auditSet("seen"), null, "a dynamic set is never audited");
  });

  it("skips a set while a sync is in flight, without making the sync wait", async () => {
    const nft = new RecordingNftExecutor();
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset(v4("192.0.2.10")));
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const apply = nft.apply.bind(nft);
    nft.apply = async (script: string) => {
      await gate;
      return apply(script);
    };
    // The kernel already holds the sync's new element, the applied state not yet.
    nft.sets.set("s4", listing("s4", ["192.0.2.10", "192.0.2.20"]));
    const sync = syncer.sync(ruleset(v4("192.0.2.10", "192.0.2.20")));
    let listed = 0;
    const list = nft.listSet.bind(nft);
    nft.listSet = async (name: string) => {
      listed++;
      return list(name);
    };
    assert.equal(await syncer.auditSet("s4"), null, "nothing audited during a sync");
    assert.equal(listed, 0);
    release();
    await sync;
    assert.deepEqual(await syncer.auditSet("s4"), { missing: [], extra: [] }, "192.0.2.20 is the sync's, not foreign");
  });

  it("discards a listing that a sync overlapped, and the sync does not wait for it", async () => {
    const nft = new RecordingNftExecutor();
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset(v4("192.0.2.10")));
    // A slow listing (a large set) showing the state before the sync.
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const list = nft.listSet.bind(nft);
    nft.sets.set("s4", listing("s4", ["192.0.2.10"]));
    nft.listSet = async (name: string) => {
      const json = await list(name);
      await gate;
      return json;
    };
    const audit = syncer.auditSet("s4");
    await syncer.sync(ruleset(v4("192.0.2.10", "192.0.2.20"))); // completes while the listing is pending
    const applied = nft.applied.length;
    release();
    assert.equal(await audit, null, "the stale listing is discarded");
    assert.equal(nft.applied.length, applied, "and nothing is 'repaired' from it");
  });
});

describe("Syncer.auditSets", () => {
  it("audits many sets from one listing of the table's sets and repairs them in one transaction", async () => {
    const nft = new RecordingNftExecutor();
    const syncer = new Syncer(nft);
    const sets = Array.from({ length: 13 }, (_, i) => ({ name: `s${i}`, keyType: "ipv4_addr", dynamic: false, elements: v4(`192.0.2.${i + 1}`) }));
    await syncer.sync({ comment: "t", chains: [], counters: [], sets: [...sets, { name: "seen", keyType: "ipv4_addr", dynamic: true, elements: [] }] });
    for (const s of sets) nft.sets.set(s.name, listing(s.name, s.name === "s12" ? [] : [textOf(s.elements)]));
    nft.sets.set("seen", listing("seen", ["203.0.113.1", "203.0.113.2"]));
    let single = 0;
    nft.listSet = async () => (single++, null);
    const before = nft.applied.length;
    const r = await syncer.auditSets(sets.map((s) => s.name), true);
    assert.equal(nft.setListings, 1, "one listing");
    assert.equal(single, 0, "no listing per set");
    assert.equal(r?.dynamicElements, 2, "the denial set's entries are counted");
    assert.deepEqual(r?.drifts.get("s12"), { missing: ["192.0.2.13"], extra: [] });
    assert.deepEqual(r?.drifts.get("s0"), { missing: [], extra: [] });
    assert.equal(nft.applied.length, before + 1);
    assert.equal(nft.applied.at(-1), "add element inet nftegress s12 { 192.0.2.13 }\n");
  });
});

function textOf(e: Uint32Array): string {
  const a = e[0] ?? 0;
  return [a >>> 24, (a >>> 16) & 255, (a >>> 8) & 255, a & 255].join(".");
}
