// Accounting sets overflowed on real packets: the per-destination and per-uid denial sets hold
// 4,096 and 1,024 entries; past that their `update` rules stop, and the verdict must not
// care (accounting and verdict are separate rules). Denials stay denied and counted by the
// policy's named counter, allowed traffic stays allowed.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cli, run } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";

const POLICY = `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: only-ten}
spec:
  mode: Enforce
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}]}
`;

interface Status {
  policies: { name: string; denied: { packets: number }; topDeniedDestinations: unknown[]; deniedByUser: unknown[] }[];
}

describe("accounting sets overflowed", () => {
  let t: Topology;
  let files: TempDir;
  before(async () => {
    t = await createTopology("acc");
    files = tempDir();
    files.write("p.yaml", POLICY);
    const r = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  const denied = async (): Promise<number> => {
    const s = JSON.parse((await cli(["status", "--netns", t.node, "-o", "json", "--state-dir", files.state])).stdout) as Status;
    return s.policies.find((p) => p.name === "only-ten")?.denied.packets ?? NaN;
  };
  const elements = async (set: string): Promise<number> => {
    const r = await run("ip", ["netns", "exec", t.node, "nft", "-j", "list", "set", "inet", "nftegress", set]);
    const json = JSON.parse(r.stdout) as { nftables: { set?: { elem?: unknown[] } }[] };
    return json.nftables.reduce((n, i) => n + (i.set?.elem?.length ?? 0), 0);
  };

  it("6,000 denied destinations and 1,100 denied uids: still denied, still counted", async () => {
    // 6,000 distinct (address, port) pairs, all denied: more than the 4,096-entry set holds.
    const send = `const d = require("node:dgram"); const s = d.createSocket("udp4"); let n = 0;
      const next = () => { if (n >= 6000) return s.close(); const port = 1000 + n++; s.send("x", port, "192.0.2." + (30 + (n % 3)), () => next()); }; next();`;
    const r1 = await run("ip", ["netns", "exec", t.node, process.execPath, "-e", send]);
    assert.equal(r1.code, 0, r1.stderr);
    // 1,100 distinct uids, each denied once: more than the 1,024-entry uid set holds.
    const perUid = `const { spawnSync } = require("node:child_process");
      for (let u = 20000; u < 21100; u++) spawnSync("bash", ["-c", "echo x >/dev/udp/192.0.2.30/9"], { uid: u, gid: u, stdio: "ignore" });`;
    const r2 = await run("ip", ["netns", "exec", t.node, process.execPath, "-e", perUid]);
    assert.equal(r2.code, 0, r2.stderr);
    const before = await denied();
    assert.ok(before >= 7100, `every denied packet counted by the named counter (${before})`);
    // The sets are full: their update rules now stop before the verdict rules run.
    const pid = (await run("ip", ["netns", "exec", t.node, "nft", "-t", "list", "sets", "inet"])).stdout.match(/set (p[0-9a-f]{10})_uid/)?.[1];
    assert.ok(pid, "the policy's uid set exists");
    assert.equal(await elements(`${pid}_d4`), 4096, "the destination set is full");
    assert.equal(await elements(`${pid}_uid`), 1024, "the uid set is full");
    assert.equal(await probeTcp(t, "192.0.2.20", 443, { timeoutMs: 800 }), "timeout", "a new destination is still denied");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", "the allowed destination is still allowed");
    const r3 = await run("ip", ["netns", "exec", t.node, "bash", "-c", "setpriv --reuid=23456 --regid=23456 --clear-groups bash -c 'echo x >/dev/udp/192.0.2.31/7777'"]);
    assert.notEqual(r3.code, 0, "a new uid's send is refused by the output drop (EPERM)");
    assert.ok((await denied()) > before, "and counted");
    const s = JSON.parse((await cli(["status", "--netns", t.node, "-o", "json", "--state-dir", files.state])).stdout) as Status;
    const p = s.policies.find((x) => x.name === "only-ten");
    assert.ok((p?.topDeniedDestinations.length ?? 0) > 0 && (p?.deniedByUser.length ?? 0) > 0, "status still reads the full sets");
  });
});
