// A policy named with the longest name Kubernetes allows (253 characters) on real nftables:
// `apply` enforces it, `status` names it exactly with its priority and counts its denials, and
// the standalone agent's metrics carry the whole name. The table's comments carry only the
// policy's id and bounded fields (compile.ts policyComment); names are kept by id in the state
// directory (src/host/policynames.ts). Before, a name of 55 characters or more vanished from
// status and metrics (the comment was cut at 100 characters).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { cli } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent } from "../support/agent.js";
import { policyDoc } from "../support/policy.js";

// 253 characters: four DNS labels of 63 and a dot between each (4 x 63 + 3 = 255 is too long:
// the last label has 61).
const LONG = ["a".repeat(63), "b".repeat(63), "c".repeat(63), `${"d".repeat(60)}x`].join(".");
const OTHER = `${"e".repeat(60)}-audit`;

const body = (priority: number, mode: string, cidr: string) => `  mode: ${mode}
  priority: ${priority}
  defaultAction: Allow
  rules:
    - {name: deny-one, action: Deny, to: {cidrs: ["${cidr}"]}, ports: [{protocol: TCP, port: 443}]}
`;

interface Status {
  policies: { name: string; id: string; priority: number; mode: string; generation: number; denied: { packets: number }; wouldDeny: { packets: number } }[];
}

describe("a policy name of 253 characters", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    assert.equal(LONG.length, 253);
    t = await createTopology("lname");
    files = tempDir();
    files.write("long.yaml", policyDoc(LONG, body(52, "Enforce", "192.0.2.10")));
    files.write("other.yaml", policyDoc(OTHER, body(123456, "Audit", "192.0.2.20")));
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  const status = async (stateDir = files.state): Promise<Status> => {
    const r = await cli(["status", "--netns", t.node, "-o", "json", "--state-dir", stateDir]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  };

  it("apply and status: enforced, named in full, priority and counts right", async () => {
    const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(LONG), r.stdout);
    assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 400 }), "timeout", "the long-named policy denies");
    assert.equal(await probeTcp(t, "192.0.2.20", 443), "connected", "the Audit one does not");
    const s = await status();
    assert.deepEqual(
      s.policies.map((p) => [p.name, p.mode, p.priority, p.generation]),
      [
        [LONG, "Enforce", 52, 1],
        [OTHER, "Audit", 123456, 1],
      ],
    );
    const long = s.policies[0];
    assert.ok(long && long.denied.packets >= 1, `denials counted: ${JSON.stringify(long?.denied)}`);
    assert.ok((s.policies[1]?.wouldDeny.packets ?? 0) >= 1, "would-denies counted");
    const text = await cli(["status", "--netns", t.node, "--state-dir", files.state]);
    assert.ok(text.stdout.includes(LONG), text.stdout);
  });

  it("without the names (state directory lost) status still lists every policy, by id", async () => {
    const s = await status(join(files.state, "elsewhere"));
    assert.equal(s.policies.length, 2, "no policy vanishes");
    for (const p of s.policies) assert.equal(p.name, p.id);
    assert.deepEqual(s.policies.map((p) => p.priority), [52, 123456]);
  });

  it("the standalone agent's metrics carry the whole name", async () => {
    rmSync(join(files.state, `netns-${t.node}`, "policies.json"), { force: true });
    const agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state]);
    try {
      await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 300 });
      const m = await eventually(
        "metrics with the long name",
        async () => (await agent.get("/metrics")).text,
        (text) => new RegExp(`nftegress_denied_packets_total\\{[^}]*policy="${LONG.replaceAll(".", "\\.")}"[^}]*\\} [1-9]`).test(text),
        15_000,
      );
      assert.match(m, new RegExp(`nftegress_policy_applied_generation\\{[^}]*policy="${LONG.replaceAll(".", "\\.")}"`));
      const s = await status();
      assert.equal(s.policies[0]?.name, LONG, "the agent saved the names again");
    } finally {
      await agent.stop();
    }
  });
});
