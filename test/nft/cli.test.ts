// CLI contract: --help everywhere, check on good input, render's node selection, usage errors.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { ROOT, cli, must, sh } from "../support/exec.js";
import { ruleset } from "../support/netns.js";
import { policyJump } from "../support/policy.js";

describe("nftegress CLI", () => {
  const ns = `nfte-cli${randomBytes(3).toString("hex")}`;
  const examples = join(ROOT, "examples");
  const passwd = join(ROOT, "test", "fixtures", "passwd");
  before(() => must("ip", ["netns", "add", ns]));
  after(() => sh("ip", ["netns", "del", ns]));

  it("prints help for every command", async () => {
    for (const cmd of ["render", "check", "explain", "apply", "status", "cleanup", "agent", "controller", "suggest", "top"]) {
      const r = await cli([cmd, "--help"]);
      assert.equal(r.code, 0, cmd);
      assert.match(r.stdout, new RegExp(`^Usage: nftegress ${cmd}`), cmd);
    }
    const top = await cli(["--help"]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Commands:/);
  });

  it("refuses unknown commands and flags with a usage error", async () => {
    const r = await cli(["frobnicate"]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^nftegress: unknown command "frobnicate"/);
    const f = await cli(["apply", "--nope"]);
    assert.equal(f.code, 2);
    assert.match(f.stderr, /^nftegress: Unknown option '--nope'/);
    const m = await cli(["apply"]);
    assert.equal(m.code, 2);
    assert.match(m.stderr, /-f FILE\|DIR is required/);
  });

  it("check validates the examples against the kernel without applying them", async () => {
    const before = ruleset(ns);
    const r = await cli(["check", "-f", examples, "--netns", ns, "--passwd", passwd]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ok: 1 policies, 1 address sets, 1 selecting this node/);
    assert.equal(ruleset(ns), before);
  });

  it("render selects policies by the given node labels", async () => {
    const labelled = await cli(["render", "-f", join(ROOT, "test", "golden", "cases", "audit-reject-priority.yaml"), "--node-labels", "role=db", "--passwd", passwd, "--group", join(ROOT, "test", "fixtures", "group")]);
    assert.equal(labelled.code, 0, labelled.stderr);
    assert.match(labelled.stdout, policyJump("enforce-base"));
    assert.match(labelled.stdout, policyJump("other-nodes"));
    const none = await cli(["render", "-f", join(ROOT, "test", "golden", "cases", "audit-reject-priority.yaml"), "--node-labels", "role=web", "--passwd", passwd]);
    assert.equal(none.code, 0, none.stderr);
    assert.doesNotMatch(none.stdout, policyJump("enforce-base"));
    assert.doesNotMatch(none.stdout, policyJump("other-nodes"));
    assert.match(none.stdout, policyJump("audit-new-rules"));
  });

  it("status reports when nothing is enforced", async () => {
    const r = await cli(["status", "--netns", ns]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /no table inet nftegress in netns .*: nothing is enforced/);
    const bad = await cli(["status", "--netns", `${ns}-missing`]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^nftegress: network namespace .*-missing: nsenter: cannot open/);
  });
});
