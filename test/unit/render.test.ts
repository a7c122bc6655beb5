// The renderer is the last line of defence against nft injection: unsafe text never renders.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { UnsafeTextError, quote, render, type Op } from "../../src/nft/transaction.js";

describe("nft text rendering", () => {
  it("quotes only safe strings", () => {
    assert.equal(quote("NFT-EGRESS-DROP app/x:1"), '"NFT-EGRESS-DROP app/x:1"');
    for (const bad of ['a"b', "a\nb", "a;b", "a\\b", "a$b", "a#b", "x".repeat(200)]) {
      assert.throws(() => quote(bad), UnsafeTextError, bad);
    }
  });

  it("refuses rule expressions that could end a statement or smuggle a string", () => {
    const rule = (expr: string, comment = "c"): Op => ({ verb: "add", object: { type: "rule", chain: "output", expr, comment } });
    assert.match(render([rule("tcp dport 443 accept")]), /^add rule inet nftegress output tcp dport 443 accept comment "c"\n$/);
    for (const bad of ["accept; delete table inet filter", "accept\ndelete table inet filter", 'log prefix "x"; flush ruleset; "', 'log prefix "a\\" accept', "accept # comment"]) {
      assert.throws(() => render([rule(bad)]), UnsafeTextError, bad);
    }
    assert.throws(() => render([rule("accept", 'x"; flush ruleset; "')]), UnsafeTextError);
  });

  it("refuses identifiers and set elements outside their grammar", () => {
    assert.throws(() => render([{ verb: "add", object: { type: "chain", name: "a b" } }]), UnsafeTextError);
    assert.throws(() => render([{ verb: "add", object: { type: "element", set: "s", elements: ["1.2.3.4 }; flush ruleset; {"] } }]), UnsafeTextError);
    assert.throws(() => render([{ verb: "flush", object: { type: "set", name: "s;x" } }]), UnsafeTextError);
  });

  it("splits large element lists over several statements of one transaction", () => {
    const elements = Array.from({ length: 2500 }, (_, i) => `10.0.${Math.floor(i / 256)}.${i % 256}`);
    const text = render([{ verb: "add", object: { type: "element", set: "s", elements } }]);
    assert.equal(text.trimEnd().split("\n").length, 3);
  });
});
