// Reading our table on real nft 1.0.6: from the terse ruleset listing, also when another
// table's flags make nft print unreadable JSON, and our own dormant flag.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { must, sh } from "../support/exec.js";
import { nftIn } from "../support/netns.js";
import { RealNftExecutor } from "../../src/nft/executor.js";
import { readTable } from "../../src/nft/read.js";

describe("reading table inet nftegress", () => {
  const ns = `nfte-rd${randomBytes(3).toString("hex")}`;
  const nft = new RealNftExecutor({ netns: ns });
  before(() => must("ip", ["netns", "add", ns]));
  after(() => sh("ip", ["netns", "del", ns]));

  it("sees absent, present (with other tables around, dormant or not) and dormant", async () => {
    assert.equal((await readTable(nft)).kind, "absent");
    nftIn(ns, "add table inet nftegress\nadd chain inet nftegress output { type filter hook output priority filter; policy accept; }\nadd counter inet nftegress c1\nadd set inet nftegress s1 { type ipv4_addr; }\nadd element inet nftegress s1 { 192.0.2.1 }\nadd rule inet nftegress output ip daddr @s1 counter name c1 comment \"mine\"\n");
    const seen = async () => {
      const t = await readTable(nft);
      assert.equal(t.kind, "present");
      return t.kind === "present" ? [[...t.listing.chains], [...t.listing.sets], [...t.listing.counters], t.listing.rules.get("output")] : [];
    };
    const want = [["output"], ["s1"], ["c1"], ["mine"]];
    assert.deepEqual(await seen(), want);
    nftIn(ns, "add table inet other { flags dormant; }\nadd chain inet other output\nadd table ip legacy { flags dormant; }\n");
    assert.deepEqual(await seen(), want, "another table's flags break nft's JSON: read ours alone");
    nftIn(ns, "add table inet nftegress { flags dormant; }\n");
    assert.equal((await readTable(nft)).kind, "dormant");
    nftIn(ns, "delete table inet other\nadd table inet nftegress\n");
    assert.deepEqual(await seen(), want);
  });
});
