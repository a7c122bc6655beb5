// Incremental compilation of destinations: remembering earlier results changes speed, never
// output. Checked against a fresh compile over many random edits, at the edges of the IPv4
// space, and with IPv6 mixed in.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DestinationCompiler, type RuleDestinations } from "../../src/policy/destinations.js";
import { formatAddress, parseCidr, type Cidr } from "../../src/net/cidr.js";
import { Coverage, formatPrefixes, parsePrefixList, union } from "../../src/net/prefixlist.js";
import { elementDiff } from "../../src/nft/plan.js";
import { rng } from "../support/random.js";


/** Random prefixes, clustered so that they overlap and touch, with some IPv6 and edges. */
function prefixes(r: () => number, n: number): string[] {
  const lens = [32, 32, 32, 31, 30, 28, 27, 25, 24, 23, 20, 17, 16, 12];
  return Array.from({ length: n }, () => {
    const group = Math.floor(r() * 4);
    if (r() < 0.03) return `2001:db8:${group}::${Math.floor(r() * 4) * 2}/${r() < 0.5 ? 128 : 127}`;
    if (r() < 0.02) return `2001:db8:${group}::/${r() < 0.5 ? 64 : 48}`;
    const len = lens[Math.floor(r() * lens.length)] ?? 32;
    const base = r() < 0.1 ? 2 ** 32 - 4096 : r() < 0.5 ? 0xc0000000 : 0x0a000000;
    const addr = base + Math.floor(r() * 4096) * 16;
    const net = addr - (addr % 2 ** (32 - len));
    return `${formatAddress(4, net)}/${len}`;
  });
}

function texts(d: RuleDestinations): string[][] {
  return d.strides.map((s) => [`${s.family}/${s.stride}`, ...(s.elements instanceof Uint32Array ? Array.from(s.elements, (a) => formatAddress(4, a)) : s.elements)]);
}

describe("destination compiler", () => {
  it("gives the same result with and without memory, over random edits of its sources", () => {
    const r = rng(42);
    const cached = new DestinationCompiler();
    let sources = [prefixes(r, 300), prefixes(r, 300), prefixes(r, 20)];
    for (let round = 0; round < 150; round++) {
      const i = Math.floor(r() * sources.length);
      const edit = r();
      const next = [...sources];
      if (edit < 0.4) next[i] = [...(sources[i] ?? []).slice(1), ...prefixes(r, 1)];
      else if (edit < 0.7) next[i] = (sources[i] ?? []).filter(() => r() > 0.05);
      else if (edit < 0.9) next[i] = prefixes(r, Math.floor(r() * 300));
      sources = next;
      const got = cached.compile("p/r", sources);
      const want = new DestinationCompiler().compile("p/r", sources);
      assert.deepEqual(texts(got), texts(want), `round ${round}`);
      assert.deepEqual(formatPrefixes(got.prefixes), formatPrefixes(want.prefixes), `round ${round}`);
      cached.sweep();
    }
  });

  it("returns the same objects for unchanged sources, and patches only the stride sets that changed", () => {
    const c = new DestinationCompiler();
    const a = ["10.0.0.0/24", "192.0.2.7", "198.51.100.0/25"];
    const b = ["203.0.113.0/28"];
    const first = c.compile("p/r", [a, b]);
    assert.equal(c.compile("p/r", [a, b]), first, "same source arrays: same result");
    const second = c.compile("p/r", [a, [...b, "203.0.113.77"]]);
    const stride = (d: RuleDestinations, n: number) => d.strides.find((s) => s.family === 4 && s.stride === n)?.elements;
    assert.equal(stride(second, 24), stride(first, 24), "the /24 set did not change: same array");
    const hosts = stride(second, 32);
    assert.ok(hosts instanceof Uint32Array);
    assert.deepEqual(Array.from(hosts, (x) => formatAddress(4, x)), ["192.0.2.7", "203.0.113.77"]);
  });

  it("aggregates at the edges of the IPv4 space", () => {
    const c = new DestinationCompiler();
    const d = c.compile("p/r", [["255.255.255.254", "255.255.255.255", "0.0.0.0", "128.0.0.0/1", "0.0.0.1"]]);
    assert.deepEqual(formatPrefixes(d.prefixes), ["0.0.0.0/31", "128.0.0.0/1"]);
    assert.deepEqual(formatPrefixes(c.compile("p/all", [["0.0.0.0/1", "128.0.0.0/1"]]).prefixes), ["0.0.0.0/0"]);
  });
});

describe("prefix lists", () => {
  const c = (s: string): Cidr => {
    const r = parseCidr(s);
    if (!r.ok) throw new Error(r.reason);
    return r.cidr;
  };

  it("cover what their union covers, across lists and adjacent prefixes", () => {
    const cov = new Coverage([parsePrefixList(["10.0.0.0/25", "192.0.2.0/31"]), parsePrefixList(["10.0.0.128/25", "192.0.2.2", "2001:db8::/32"])]);
    for (const yes of ["10.0.0.0/24", "10.0.0.7", "192.0.2.0/31", "192.0.2.2", "2001:db8:1::/48"]) assert.equal(cov.covers(c(yes)), true, yes);
    for (const no of ["10.0.0.0/23", "192.0.2.0/30", "192.0.2.3", "2001:db9::/32", "11.0.0.0/8"]) assert.equal(cov.covers(c(no)), false, no);
  });

  it("union aggregates and prints canonically", () => {
    assert.deepEqual(formatPrefixes(union([parsePrefixList(["10.0.0.1", "10.0.0.2", "10.0.0.3"]), parsePrefixList(["10.0.0.0", "2001:db8::/65", "2001:db8:0:0:8000::/65"])])), ["10.0.0.0/30", "2001:db8::/64"]);
  });
});

describe("element diff", () => {
  it("finds what left and what came, for numeric and text elements alike", () => {
    const diff = elementDiff(Uint32Array.from([1, 2, 3, 5, 8]), Uint32Array.from([2, 3, 4, 8, 9]));
    assert.deepEqual([Array.from(diff.removed as Uint32Array), Array.from(diff.added as Uint32Array)], [[1, 5], [4, 9]]);
    const text = elementDiff(["a", "b", "c", "d"], ["a", "c", "d", "e"]);
    assert.deepEqual([text.removed, text.added], [["b"], ["e"]]);
  });
});
