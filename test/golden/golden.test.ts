// Golden tests: policy YAML in, nft text out. UPDATE_GOLDEN=1 rewrites the expected files.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/exec.js";
import { loadDocuments } from "../../src/source/documents.js";
import { compile } from "../../src/policy/compile.js";
import { defaultFailsafe } from "../../src/policy/guard.js";
import { planFull } from "../../src/nft/plan.js";
import { render } from "../../src/nft/transaction.js";

const CASES = join(ROOT, "test", "golden", "cases");

export function renderCase(file: string): string {
  const docs = loadDocuments(file);
  const result = compile({
    policies: docs.policies,
    node: { name: "node-a", labels: { role: "app" } },
    addressSets: docs.addressSets,
    identities: { users: new Map([["appuser", 4242]]), groups: new Map([["backup", 34]]) },
    fqdns: new Map([["mirror.internal.example", ["192.0.2.80", "2001:db8:80::1"]]]),
    cgroups: new Map([["system.slice/apt-daily.service", "system.slice/apt-daily.service"]]),
    guard: { apiServers: [{ address: "10.96.0.1", port: 443 }, { address: "192.0.2.250", port: 6443 }, { address: "2001:db8::250", port: 6443 }], failsafe: defaultFailsafe({ resolvers: ["10.10.0.10", "2001:db8::53"], timeServers: ["10.10.0.20", "2001:db8::123"] }), nodes: ["192.0.2.201", "192.0.2.202", "2001:db8::201"] },
  });
  assert.deepEqual(result.errors, []);
  const notes = result.policies.flatMap((p) => p.notes.map((n) => `# note: ${p.name}: ${n}`));
  const script = render(planFull(result.ruleset, { chains: new Set(), sets: new Set(), counters: new Set() }).main);
  return [...notes, script].join("\n");
}

describe("golden: policy YAML to nft text", () => {
  for (const f of readdirSync(CASES).filter((n) => n.endsWith(".yaml"))) {
    it(f, () => {
      const got = renderCase(join(CASES, f));
      const expectedFile = join(CASES, f.replace(/\.yaml$/, ".nft"));
      if (process.env["UPDATE_GOLDEN"] === "1") writeFileSync(expectedFile, got);
      assert.ok(existsSync(expectedFile), `${expectedFile} is missing: run with UPDATE_GOLDEN=1 and review it`);
      assert.equal(got, readFileSync(expectedFile, "utf8"), `${f}: output differs from ${expectedFile} (UPDATE_GOLDEN=1 rewrites it; review the diff)`);
    });
  }
});
