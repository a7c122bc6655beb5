// Reading our table out of a terse listing of the whole ruleset (a few milliseconds however
// large our sets are), and its dormant flag out of the text listing.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { drift, parseTable, tableDormant, tableItems } from "../../src/nft/listing.js";
import { Syncer } from "../../src/agent/syncer.js";
import type { Ruleset } from "../../src/nft/ruleset.js";
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
    { rule: { family: "inet", table: "nftegress", chain: "output", handle: 6, comment: "policy gen:1", expr: [{ jump: { target: "p1" } }] } },
    { rule: { family: "inet", table: "other", chain: "output", handle: 7, comment: "theirs", expr: [] } },
  ],
};

describe("ruleset listing", () => {
  it("keeps only our table's objects", () => {
    const mine = tableItems(ruleset, "inet", "nftegress");
    assert.ok(mine);
    const t = parseTable(mine);
    assert.deepEqual([[...t.chains], [...t.sets], [...t.counters]], [["output"], ["r1_4_32"], ["p1_denied"]]);
    assert.deepEqual(t.rules.get("output"), ["policy gen:1"]);
    assert.deepEqual(t.jumps, [{ target: "p1", comment: "policy gen:1" }]);
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

describe("rule content prints", () => {
  const chain = (extra: Record<string, unknown> = {}) => ({ chain: { family: "inet", table: "nftegress", name: "output", handle: 1, type: "filter", hook: "output", prio: 0, policy: "accept", ...extra } });
  const rule = (handle: number, comment: string, expr: unknown[]) => ({ rule: { family: "inet", table: "nftegress", chain: "output", handle, comment, expr } });
  const drop = [{ match: { op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 443 } }, { drop: null }];
  const applied: Ruleset = { comment: "t", sets: [], counters: [], chains: [{ name: "output", base: { type: "filter", hook: "output", priority: "filter", policy: "accept" }, rules: [{ expr: "tcp dport 443 drop", comment: "deny h:1" }] }] };
  const table = (...items: Record<string, unknown>[]) => parseTable({ nftables: [{ table: { family: "inet", name: "nftegress", handle: 1 } }, ...items] });

  it("sees a rule replaced under the same comment, and a changed chain policy", () => {
    const known = table(chain(), rule(2, "deny h:1", drop)).prints;
    assert.deepEqual(drift(applied, table(chain(), rule(2, "deny h:1", drop)), known), [], "same content: no drift");
    assert.deepEqual(drift(applied, table(chain(), rule(7, "deny h:1", drop)), known), [], "handles do not matter");
    const accept = [drop[0], { accept: null }];
    assert.deepEqual(drift(applied, table(chain(), rule(2, "deny h:1", accept)), known), ["chain output rule 1 (deny h:1) content changed"]);
    assert.deepEqual(drift(applied, table(chain(), rule(2, "deny h:1", accept))), [], "without a learned print only comments are compared");
    assert.deepEqual(drift(applied, table(chain({ policy: "drop" }), rule(2, "deny h:1", drop)), known), ["chain output properties changed"]);
    assert.deepEqual(drift(applied, table(chain({ prio: 10 }), rule(2, "deny h:1", drop)), known), ["chain output properties changed"]);
    assert.deepEqual(drift(applied, table(chain(), rule(3, "deny h:1", accept), rule(2, "deny h:1", drop)), known), ["chain output rules differ"], "a rule inserted with a copied comment");
  });

  it("ignores the packet counts of anonymous counters", () => {
    const counted = (packets: number) => [{ counter: { packets, bytes: packets * 60 } }, { drop: null }];
    const known = table(chain(), rule(2, "deny h:1", counted(0))).prints;
    assert.deepEqual(drift(applied, table(chain(), rule(2, "deny h:1", counted(99))), known), []);
    assert.notDeepEqual(drift(applied, table(chain(), rule(2, "deny h:1", [{ counter: { packets: 1, bytes: 1 } }, { accept: null }])), known), []);
  });
});

describe("Syncer learns rule content after writing a chain", () => {
  const ruleset = (verdict: string): Ruleset => ({ comment: "t", sets: [{ name: "s", keyType: "ipv4_addr", dynamic: false, elements: [] }], counters: [], chains: [{ name: "output", base: { type: "filter", hook: "output", priority: "filter", policy: "accept" }, rules: [{ expr: verdict, comment: "deny h:1" }] }] });
  const listed = (verdict: string) => ({ nftables: [{ table: { family: "inet", name: "nftegress", handle: 1 } }, { set: { family: "inet", table: "nftegress", name: "s", type: "ipv4_addr", handle: 3 } }, { chain: { family: "inet", table: "nftegress", name: "output", handle: 1, type: "filter", hook: "output", prio: 0, policy: "accept" } }, { rule: { family: "inet", table: "nftegress", chain: "output", handle: 2, comment: "deny h:1", expr: [{ [verdict]: null }] } }] });

  it("repairs a rule replaced by hand under the same comment, and only then", async () => {
    const nft = new RecordingNftExecutor();
    nft.onApply = () => (nft.table = listed("drop"));
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset("drop"));
    assert.deepEqual(await syncer.repairDrift(), [], "unchanged");
    const applies = nft.applied.length;
    nft.table = listed("accept");
    assert.deepEqual(await syncer.repairDrift(), ["chain output rule 1 (deny h:1) content changed"]);
    assert.equal(nft.applied.length, applies + 1, "one transaction");
    assert.match(nft.applied.at(-1) ?? "", /flush chain inet nftegress output\nadd rule inet nftegress output drop comment "deny h:1"/);
    assert.deepEqual(await syncer.repairDrift(), [], "repaired and learned again");
  });

  it("deletes and declares again, in the repair's one transaction, a base chain whose properties changed", async () => {
    const nft = new RecordingNftExecutor();
    nft.onApply = () => (nft.table = listed("drop"));
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset("drop"));
    const changed = listed("drop");
    const c = changed.nftables[2]?.["chain"] as Record<string, unknown>;
    c["prio"] = 10;
    nft.table = changed;
    assert.deepEqual(await syncer.repairDrift(), ["chain output properties changed"]);
    assert.match(nft.applied.at(-1) ?? "", /^flush chain inet nftegress output\ndelete chain inet nftegress output\nadd table inet nftegress/);
  });

  it("an element-only change reads nothing back (the fast path stays a single transaction)", async () => {
    const nft = new RecordingNftExecutor();
    nft.onApply = () => (nft.table = listed("drop"));
    const syncer = new Syncer(nft);
    await syncer.sync(ruleset("drop"));
    let reads = 0;
    const list = nft.listRuleset.bind(nft);
    nft.listRuleset = () => (reads++, list());
    const next = ruleset("drop");
    const s = next.sets[0];
    if (s) s.elements = ["192.0.2.1"];
    await syncer.sync(next);
    assert.equal(reads, 0);
    assert.match(nft.applied.at(-1) ?? "", /^add element inet nftegress s \{ 192\.0\.2\.1 \}\n$/);
  });
});
