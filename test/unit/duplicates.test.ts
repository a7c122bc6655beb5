// Duplicate object names in policy files are refused with both locations, in one line.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { loadDocuments } from "../../src/source/documents.js";
import { tempDir } from "../support/files.js";

const pol = (name: string) => `apiVersion: nftegress.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: ${name}}\nspec: {mode: Enforce}\n`;
const set = (name: string, label: string, cidr: string) =>
  `apiVersion: nftegress.io/v1alpha1\nkind: EgressAddressSet\nmetadata: {name: ${name}, labels: {nftegress.io/set: ${label}}}\nspec: {cidrs: ["${cidr}"]}\n`;

describe("duplicate names", () => {
  it("two documents of one file", () => {
    const d = tempDir();
    try {
      d.write("a.yaml", `${pol("one")}---\n${pol("two")}---\n${pol("one")}`);
      assert.throws(() => loadDocuments(d.dir), (e: Error) => {
        assert.equal(e.message, `${d.dir}/a.yaml: document 3: EgressPolicy/one: metadata.name: duplicate name, also defined in ${d.dir}/a.yaml: document 1`);
        return true;
      });
    } finally {
      d.remove();
    }
  });

  it("two files", () => {
    const d = tempDir();
    try {
      d.write("a.yaml", pol("one"));
      d.write("b.yaml", `${pol("two")}---\n${pol("one")}`);
      assert.throws(() => loadDocuments(d.dir), (e: Error) => {
        assert.equal(e.message, `${d.dir}/b.yaml: document 2: EgressPolicy/one: metadata.name: duplicate name, also defined in ${d.dir}/a.yaml: document 1`);
        return true;
      });
    } finally {
      d.remove();
    }
  });

  it("address-set chunks share a set label (not a duplicate); two objects with one name are", () => {
    const d = tempDir();
    try {
      d.write("s.yaml", `${set("big-1", "big", "192.0.2.0/24")}---\n${set("big-2", "big", "198.51.100.0/24")}`);
      assert.equal(loadDocuments(d.dir).addressSets.length, 2);
      d.write("t.yaml", set("big-1", "other", "203.0.113.0/24"));
      assert.throws(() => loadDocuments(d.dir), /t\.yaml: document 1: EgressAddressSet\/big-1: metadata\.name: duplicate name, also defined in .*s\.yaml: document 1/);
    } finally {
      d.remove();
    }
  });

  it("a policy and an address set may share a name", () => {
    const d = tempDir();
    try {
      d.write("a.yaml", `${pol("x")}---\n${set("x", "x", "192.0.2.0/24")}`);
      const docs = loadDocuments(d.dir);
      assert.equal(docs.policies.length + docs.addressSets.length, 2);
    } finally {
      d.remove();
    }
  });
});
