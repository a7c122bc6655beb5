// The two revocation layouts (src/nft/recheck.ts): the mark field's limits, the epoch's turn,
// reading the kernel's epoch back from nft's JSON (as nft 1.0.6 lists the stamp rule), and the
// planner moving every changing transaction of the mark layout to the next epoch.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { kernelEpoch, markField, nextEpoch, recheckObjects, withEpoch } from "../../src/nft/recheck.js";
import { withRecheck } from "../../src/nft/plan.js";
import type { Ruleset } from "../../src/nft/ruleset.js";
import type { NftJson } from "../../src/nft/executor.js";

const stampRule = (keep: number, bits: number): NftJson => ({
  nftables: [
    { rule: { family: "inet", table: "nftegress", chain: "accepted", handle: 3, expr: [{ mangle: { key: { ct: { key: "mark" } }, value: { "|": [{ "&": [{ ct: { key: "mark" } }, keep] }, bits] } } }] } },
  ],
});

describe("revocation by conntrack mark", () => {
  it("takes 8 to 24 contiguous bits", () => {
    assert.deepEqual(markField(0x00ff0000), { shift: 16, max: 255 });
    assert.deepEqual(markField(0x000000ff), { shift: 0, max: 255 });
    assert.deepEqual(markField(0xffffff00), { shift: 8, max: 0xffffff });
    for (const bad of [0, 0xf, 0x00f0f000, 0xffffffff, 0x1ffffff, -1, 1.5]) assert.equal(markField(bad), null, `0x${bad.toString(16)}`);
  });

  it("turns through every epoch of the field, never 0", () => {
    assert.equal(nextEpoch(0xff00, 1), 2);
    assert.equal(nextEpoch(0xff00, 255), 1);
    assert.equal(nextEpoch(0xff00, 0), 1);
    const seen = new Set<number>();
    let e = 1;
    for (let i = 0; i < 255; i++) {
      seen.add(e);
      e = nextEpoch(0xff00, e);
    }
    assert.equal(seen.size, 255);
    assert.equal(e, 1);
  });

  it("stamps only the mask's bits and checks them exactly", () => {
    const { chains, sets } = recheckObjects({ mask: 0x00ff0000, epoch: 5 });
    assert.deepEqual(sets, [], "no flows set");
    const exprs = chains.flatMap((c) => c.rules.map((r) => `${c.name}: ${r.expr}`));
    assert.deepEqual(exprs, [
      "established: ct direction reply accept",
      "established: ct mark and 0x00ff0000 == 0x00050000 accept",
      "accepted: ct mark set ct mark and 0xff00ffff or 0x00050000",
      "accepted: accept",
    ]);
  });

  it("reads the kernel's epoch from the stamp rule, folded by nft or not; anything else is unknown", () => {
    assert.equal(kernelEpoch(stampRule(0xff05ffff, 0x00050000), 0x00ff0000), 5, "as nft 1.0.6 lists it");
    assert.equal(kernelEpoch(stampRule(0xff00ffff, 0x00050000), 0x00ff0000), 5, "unfolded");
    assert.equal(kernelEpoch(stampRule(0xff05ffff, 0x00050000), 0x0000ff00), null, "another mask");
    assert.equal(kernelEpoch(stampRule(0xff00ffff, 0x01050000), 0x00ff0000), null, "bits outside the mask");
    assert.equal(kernelEpoch(stampRule(0xff00ffff, 0), 0x00ff0000), null, "epoch 0 is never one");
    assert.equal(kernelEpoch({ nftables: [{ rule: { chain: "accepted", expr: [{ "update": {} }] } }] }, 0x00ff0000), null, "the flows layout");
    assert.equal(kernelEpoch({ nftables: [] }, 0x00ff0000), null, "no table");
  });

  it("a changing transaction moves to the next epoch; nothing changed sends nothing", () => {
    const r: Ruleset = { comment: "", counters: [], sets: [], chains: recheckObjects({ mask: 0xff, epoch: 255 }).chains, recheckMark: { mask: 0xff, epoch: 255 } };
    assert.deepEqual(withRecheck(r, []), { main: [], ruleset: r });
    const op = { verb: "add", object: { type: "element", set: "s", elements: ["192.0.2.1"] } } as const;
    const { main, ruleset } = withRecheck(r, [op]);
    assert.equal(ruleset.recheckMark?.epoch, 1, "wraps past the field's largest");
    assert.deepEqual(ruleset, withEpoch(r, 1));
    assert.deepEqual(main[0], op);
    const rules = main.flatMap((o) => (o.object.type === "rule" ? [`${o.object.chain}: ${o.object.expr}`] : []));
    assert.ok(rules.includes("established: ct mark and 0x000000ff == 0x00000001 accept"), rules.join("\n"));
    assert.ok(rules.includes("accepted: ct mark set ct mark and 0xffffff00 or 0x00000001"), rules.join("\n"));
    assert.equal(main.filter((o) => o.verb === "flush" && o.object.type === "chain").length, 2, "each recheck chain refilled once");
  });
});
