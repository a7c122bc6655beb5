// The committed CRDs must be exactly what the zod schemas generate.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { renderCrds } from "../../src/api/crdyaml.js";

describe("CRDs", () => {
  const generated = renderCrds();
  it("crds/ holds exactly the generated files", () => {
    assert.deepEqual(readdirSync(join(ROOT, "crds")).sort(), generated.map((g) => g.file).sort());
  });
  for (const g of generated) {
    it(`${g.file} matches the schemas (run make crds after changing src/api)`, () => {
      assert.equal(readFileSync(join(ROOT, "crds", g.file), "utf8"), g.text);
    });
  }
  it("carries the CEL rules a schema cannot express", () => {
    const text = generated.map((g) => g.text).join("\n");
    for (const rule of ["isCIDR(self)", "self.exists_one(s, s.name == r.name)", "self.endPort >= self.port", "self.protocol in [", "int(self) <= 4294967294"]) {
      assert.ok(text.includes(rule), rule);
    }
    assert.match(text, /subresources:\n\s+status: \{\}/);
    // rules: an ordered first-match list, atomic for server-side apply (a list map would
    // merge two field managers' rules by name into an order nobody wrote).
    assert.doesNotMatch(text, /x-kubernetes-list-type: map/);
    assert.match(text, /rules:\n(\s+.*\n)*?\s+x-kubernetes-list-type: atomic\n/);
    assert.match(text, /message: endPort must be >= port \(and needs port\)\n\s+fieldPath: \.endPort\n\s+reason: FieldValueInvalid/);
    assert.match(text, /message: port is only valid with protocol TCP, UDP or SCTP\n\s+fieldPath: \.port\n\s+reason: FieldValueInvalid/);
  });
});
