// Reading our table out of a terse listing of the whole ruleset (a few milliseconds however
// large our sets are), and its dormant flag out of the text listing.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { parseTable, tableDormant, tableItems } from "../../src/nft/listing.js";
import { readTable } from "../../src/nft/read.js";
import { RecordingNftExecutor } from "../../src/nft/fake.js";

const ruleset = {
  nftables: [
    { metainfo: { version: "1.0.6" } },
    { table: { family: "inet", name: "other", handle: 1 } },
    { chain: { family: "inet", table: "other", name: "output", handle: 1 } },
    { table: { family: "inet", name: "nftegress", handle: 2 } },
    { counter: { family: "inet", table: "nftegress", name: "p1_denied", handle: 3, packets: 4, bytes: 5 } },
    { set: { family: "inet", table: "nftegress", name: "r1_4_32", type: "ipv4_addr", handle: 4 } },
    { chain: { family: "inet", table: "nftegress", name: "output", handle: 5 } },
    { rule: { family: "inet", table: "nftegress", chain: "output", handle: 6, comment: "policy:web gen:1", expr: [{ jump: { target: "p1" } }] } },
    { rule: { family: "inet", table: "other", chain: "output", handle: 7, comment: "theirs", expr: [] } },
  ],
};

describe("ruleset listing", () => {
  it("keeps only our table's objects", () => {
    const mine = tableItems(ruleset, "inet", "nftegress");
    assert.ok(mine);
    const t = parseTable(mine);
    assert.deepEqual([[...t.chains], [...t.sets], [...t.counters]], [["output"], ["r1_4_32"], ["p1_denied"]]);
    assert.deepEqual(t.rules.get("output"), ["policy:web gen:1"]);
    assert.deepEqual(t.jumps, [{ target: "p1", comment: "policy:web gen:1" }]);
    assert.equal(tableItems(ruleset, "inet", "absent"), null);
  });

  it("reads the dormant flag of one table from the text listing", () => {
    const text = 'table inet other {\n\tflags dormant\n}\ntable inet nftegress {\n\tcomment "managed"\n\tchain output {\n\t}\n}\n';
    assert.equal(tableDormant(text, "inet", "nftegress"), false);
    assert.equal(tableDormant(text, "inet", "other"), true);
    assert.equal(tableDormant(text.replace('\tcomment "managed"', '\tflags dormant\n\tcomment "managed"'), "inet", "nftegress"), true);
    assert.equal(tableDormant(text, "ip", "nftegress"), null);
  });

  it("tells absent, dormant and present apart", async () => {
    const nft = new RecordingNftExecutor();
    assert.equal((await readTable(nft)).kind, "absent");
    nft.dormant = true;
    assert.equal((await readTable(nft)).kind, "dormant");
    nft.dormant = false;
    assert.equal((await readTable(nft)).kind, "present");
  });
});
