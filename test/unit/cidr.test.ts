import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { aggregate, expandToStrides, formatAddress, formatCidr, parseCidr, type Cidr } from "../../src/net/cidr.js";

function c(s: string): Cidr {
  const r = parseCidr(s);
  if (!r.ok) throw new Error(r.reason);
  return r.cidr;
}

describe("cidr parsing", () => {
  it("accepts addresses and prefixes and prints them canonically", () => {
    assert.equal(formatCidr(c("192.0.2.10")), "192.0.2.10/32");
    assert.equal(formatCidr(c("10.0.0.0/8")), "10.0.0.0/8");
    assert.equal(formatCidr(c("2001:DB8:0:0::/64")), "2001:db8::/64");
    assert.equal(formatCidr(c("::ffff:192.0.2.1")), "::ffff:c000:201/128");
    assert.equal(formatCidr(c("::/0")), "::/0");
    assert.equal(formatCidr(c("2001:db8:0:1:0:0:0:1")), "2001:db8:0:1::1/128");
  });

  it("rejects malformed input with a reason", () => {
    for (const bad of ["", "10.0.0", "10.0.0.256/32", "10.0.0.0/33", "10.0.0.1/8", "01.2.3.4", "1:2:3:4:5:6:7:8:9", "::1::2", "10.0.0.0/08", "x", "10.0.0.0/ 8", '"; delete table inet filter;']) {
      const r = parseCidr(bad);
      assert.equal(r.ok, false, bad);
    }
    const r = parseCidr("10.0.0.1/8");
    assert.ok(!r.ok && /host bits set; did you mean 10.0.0.0\/8/.test(r.reason));
  });
});

describe("aggregation", () => {
  it("merges overlaps and adjacent blocks and drops covered prefixes", () => {
    const out = aggregate(["10.0.0.0/25", "10.0.0.128/25", "10.0.0.7", "10.0.1.0/24", "192.0.2.1", "192.0.2.3", "2001:db8::/65", "2001:db8:0:0:8000::/65"].map(c)).map(formatCidr);
    assert.deepEqual(out, ["10.0.0.0/23", "192.0.2.1/32", "192.0.2.3/32", "2001:db8::/64"]);
  });

  it("turns a range into the fewest prefixes", () => {
    const out = aggregate(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"].map(c)).map(formatCidr);
    assert.deepEqual(out, ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/32"]);
  });
});

describe("stride expansion", () => {
  it("expands a prefix to at most 8 entries of the next 4-bit stride", () => {
    const m = expandToStrides([c("203.0.0.0/17"), c("192.0.2.7"), c("198.51.100.0/24")]);
    assert.deepEqual([...m.keys()].sort((a, b) => a - b), [20, 24, 32]);
    assert.deepEqual((m.get(20) ?? []).map((a) => formatAddress(4, a)), ["203.0.0.0", "203.0.16.0", "203.0.32.0", "203.0.48.0", "203.0.64.0", "203.0.80.0", "203.0.96.0", "203.0.112.0"]);
    assert.deepEqual((m.get(24) ?? []).map((a) => formatAddress(4, a)), ["198.51.100.0"]);
  });
});
