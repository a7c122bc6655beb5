// Validation of bad input at the schema level, and defaults.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { EgressPolicy } from "../../src/api/policy.js";
import { selects } from "../../src/policy/selector.js";

const base = { apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name: "p" } };

describe("EgressPolicy schema", () => {
  it("fills safe defaults: Audit, deny by default, drop, logging off", () => {
    const p = EgressPolicy.parse({ ...base, spec: {} });
    assert.equal(p.spec.mode, "Audit");
    assert.equal(p.spec.defaultAction, "Deny");
    assert.equal(p.spec.denyResponse, "Drop");
    assert.equal(p.spec.logging.enabled, false);
    assert.deepEqual(p.spec.nodeSelector, {});
  });

  it("numeric uids and gids: 0-4294967294 (nft refuses larger ones, 2^32-1 is no id)", () => {
    const spec = (users: string[], groups: string[] = []) => ({ ...base, spec: { rules: [{ name: "r", action: "Allow", users, groups }] } });
    for (const ok of ["0", "1000", "4294967294", "0000000001"]) assert.ok(EgressPolicy.safeParse(spec([ok], [ok])).success, ok);
    for (const [users, groups, path] of [[["9999999999"], [], "spec.rules.0.users.0"], [["4294967295"], [], "spec.rules.0.users.0"], [["1"], ["4294967295"], "spec.rules.0.groups.0"]] as const) {
      const r = EgressPolicy.safeParse(spec([...users], [...groups]));
      assert.equal(r.success, false, `${users.join()} ${groups.join()}`);
      assert.equal(r.error?.issues[0]?.path.join("."), path);
      assert.equal(r.error?.issues[0]?.message, "a numeric id must be 0-4294967294");
    }
  });

  it("rejects bad values with the field's path", () => {
    const cases: [unknown, string][] = [
      [{ rules: [{ name: "r", action: "Allow", to: { cidrs: ["1.2.3.4/40"] } }] }, "rules.0.to.cidrs.0"],
      [{ rules: [{ name: "R", action: "Allow" }] }, "rules.0.name"],
      [{ rules: [{ name: "r", action: "Maybe" }] }, "rules.0.action"],
      [{ rules: [{ name: "r", action: "Allow", users: ["bad user"] }] }, "rules.0.users.0"],
      [{ rules: [{ name: "r", action: "Allow", cgroups: ["../etc"] }] }, "rules.0.cgroups.0"],
      [{ rules: [{ name: "r", action: "Allow", ports: [{ protocol: "TCP", endPort: 80 }] }] }, "rules.0.ports.0.endPort"],
      [{ logging: { rate: "fast" } }, "logging.rate"],
      [{ priority: -1 }, "priority"],
      [{ mode: "enforce" }, "mode"],
    ];
    for (const [spec, path] of cases) {
      const r = EgressPolicy.safeParse({ ...base, spec });
      assert.equal(r.success, false, path);
      assert.equal(r.error?.issues[0]?.path.slice(1).join("."), path);
    }
  });
});

describe("node selectors", () => {
  it("follow metav1.LabelSelector semantics", () => {
    const labels = { role: "app", zone: "a" };
    assert.ok(selects({}, labels));
    assert.ok(selects({ matchLabels: { role: "app" } }, labels));
    assert.ok(!selects({ matchLabels: { role: "db" } }, labels));
    assert.ok(selects({ matchExpressions: [{ key: "role", operator: "In", values: ["db", "app"] }] }, labels));
    assert.ok(!selects({ matchExpressions: [{ key: "role", operator: "NotIn", values: ["app"] }] }, labels));
    assert.ok(selects({ matchExpressions: [{ key: "tier", operator: "DoesNotExist" }] }, labels));
    assert.ok(!selects({ matchExpressions: [{ key: "tier", operator: "Exists" }] }, labels));
  });
});
