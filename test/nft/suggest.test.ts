// The Audit-first workflow: run in Audit, let real traffic be counted, turn the would-deny
// destinations into Allow rules with `suggest`, switch to Enforce: the observed traffic still
// works and everything else is denied.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import yaml from "js-yaml";
import { cli } from "../support/exec.js";
import { createTopology, probeTcp, probeUdp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { EgressPolicy } from "../../src/api/policy.js";

const AUDIT = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: rollout}
spec:
  mode: Audit
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}]}
    - {name: never-this, action: Deny, to: {cidrs: ["198.51.100.41"]}}
`;

describe("suggest: from Audit to Enforce", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    t = await createTopology("sug");
    files = tempDir();
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  it("suggests rules for what Audit counted, and they work in Enforce", async () => {
    files.write("p.yaml", AUDIT);
    const common = ["--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state];
    assert.equal((await cli(["apply", "-f", files.dir, ...common])).code, 0);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 22), "connected");
    assert.equal(await probeUdp(t, "192.0.2.53", 53), "connected");
    assert.equal(await probeTcp(t, "198.51.100.41", 443), "connected");

    const r = await cli(["suggest", "rollout", "-f", files.dir, "--netns", t.node]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# nftegress suggest: 3 rules from 3 destinations EgressPolicy\/rollout would have denied/);
    assert.match(r.stdout, /# skipped 198\.51\.100\.41:443\/tcp: denied by rule never-this/);
    const suggested = EgressPolicy.parse(yaml.load(r.stdout));
    const added = suggested.spec.rules.filter((x) => x.name.startsWith("suggested-"));
    assert.deepEqual(
      added.map((x) => [x.name, x.to?.cidrs, x.ports]),
      [
        ["suggested-tcp-22", ["192.0.2.20/32"], [{ protocol: "TCP", port: 22 }]],
        ["suggested-tcp-443", ["192.0.2.30/32"], [{ protocol: "TCP", port: 443 }]],
        ["suggested-udp-53", ["192.0.2.53/32"], [{ protocol: "UDP", port: 53 }]],
      ],
    );

    files.write("p.yaml", r.stdout.replace("mode: Audit", "mode: Enforce"));
    const applied = await cli(["apply", "-f", files.dir, ...common]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 22), "connected");
    assert.equal(await probeUdp(t, "192.0.2.53", 53), "connected");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "never observed: denied");
    assert.equal(await probeTcp(t, "198.51.100.41", 443, { timeoutMs: 800 }), "timeout", "explicitly denied: not suggested");
  });

  it("says clearly when the policy is not applied or unknown", async () => {
    const missing = await cli(["suggest", "nosuch", "-f", files.dir, "--netns", t.node]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no EgressPolicy named "nosuch"/);
    const usage = await cli(["suggest"]);
    assert.equal(usage.code, 2);
  });
});
