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
  it("audits one set per tick in turn, paced to its share of a core, and reports repairs", async () => {
    let clock = 0;
    const audited: string[] = [];
    const drift: Record<string, ElementDrift> = { a: { missing: [], extra: [] }, b: { missing: ["192.0.2.1"], extra: [] } };
    const syncer = {
      staticSets: () => [{ name: "a" }, { name: "b" }].map((s) => ({ ...s, keyType: "ipv4_addr", dynamic: false, elements: [] })),
      auditSet: async (name: string) => {
        audited.push(name);
        clock += 200; // listing took 200 ms
        return drift[name] ?? null;
      },
    };
    const auditor = new SetAuditor(syncer, { dutyPercent: 1, now: () => clock });
    assert.equal(await auditor.tick(), null, "set a matches");
    clock += 19_000;
    assert.equal(await auditor.tick(), null, "not due: 200 ms at 1 % waits 19.8 s");
    assert.deepEqual(audited, ["a"]);
    clock += 1_000;
    assert.deepEqual(await auditor.tick(), { set: "b", drift: drift["b"] });
    clock += 20_000;
    await auditor.tick();
    assert.deepEqual(audited, ["a", "b", "a"], "round robin");
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
