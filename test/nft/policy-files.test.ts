// Hostile entries in a running standalone agent's policy directory: a FIFO, a symlink to
// /dev/zero, a symlink to a FIFO and a file over the size limit. Each is skipped or refused
// with one log line (not one per reload), the agent keeps answering /metrics, keeps repairing
// drift and keeps the other files enforced (real nft, real packets); a good file that turns
// oversize keeps its last good state. The CLI's -f goes through the same reader.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, ftruncateSync, openSync, rmSync, symlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { cli, sh } from "../support/exec.js";
import { createTopology, probeTcp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { eventually, startAgent, type AgentProcess } from "../support/agent.js";

const policy = (name: string, allow: string) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  mode: Enforce
  rules:
    - name: web
      action: Allow
      to: {cidrs: ["${allow}"]}
      ports: [{protocol: TCP, port: 443}]
`;

const count = (text: string, re: RegExp) => text.split("\n").filter((l) => re.test(l)).length;

describe("policy directory: only regular files are read", () => {
  let t: Topology;
  let files: TempDir;
  let agent: AgentProcess;
  before(async () => {
    t = await createTopology("pfl");
    files = tempDir();
    files.write("a-web.yaml", policy("web", "192.0.2.10"));
    files.write("b-other.yaml", policy("other", "192.0.2.20"));
    agent = await startAgent(["--standalone", "--policies", files.dir, "--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--drift-interval", "2", "--state-dir", files.state]);
    await eventually("readyz", () => agent.get("/readyz"), (r) => r.status === 200);
  });
  after(async () => {
    await agent?.stop("SIGKILL");
    await t?.close();
    files?.remove();
  });

  it("skips a FIFO, a symlink to /dev/zero and a symlink to a FIFO, and refuses an oversize file, keeping everything else working", async () => {
    execFileSync("mkfifo", [join(files.dir, "c-fifo.yaml")]);
    symlinkSync("/dev/zero", join(files.dir, "d-zero.yaml"));
    symlinkSync(join(files.dir, "c-fifo.yaml"), join(files.dir, "e-to-fifo.yaml"));
    // A good file turned oversize: refused, its last good state kept.
    const big = join(files.dir, "b-other.yaml");
    const fd = openSync(big, "r+");
    ftruncateSync(fd, 5 * 1024 * 1024);
    closeSync(fd);
    await eventually("oversize refused", async () => agent.log(), (l) => /b-other\.yaml: file is 5\.0 MiB, over the 4 MiB limit[^\n]*policy file invalid, keeping its last good state/.test(l), 5000);
    // Several polls and drift checks later.
    await new Promise((r) => setTimeout(r, 4000));
    const started = performance.now();
    const m = await agent.get("/metrics");
    assert.equal(m.status, 200);
    assert.ok(performance.now() - started < 1000, "metrics answer at once");
    const log = agent.log();
    assert.equal(count(log, /c-fifo\.yaml: a FIFO, not a regular file[^\n]*not a regular file, skipped/), 1, "one line for the FIFO");
    assert.equal(count(log, /d-zero\.yaml: a character device, not a regular file[^\n]*skipped/), 1, "one line for the /dev/zero symlink");
    assert.equal(count(log, /e-to-fifo\.yaml: a FIFO, not a regular file[^\n]*skipped/), 1, "one line for the symlink to the FIFO");
    assert.equal(count(log, /b-other\.yaml: file is 5\.0 MiB/), 1, "one line for the oversize file");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected", "the other file is enforced");
    assert.equal(await probeTcp(t, "192.0.2.20", 443), "connected", "the oversize file's last good state is kept");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 600 }), "timeout", "and still denies");
    const rss = Number(sh("ps", ["-o", "rss=", "-p", String(agent.child.pid)]).stdout.trim()) / 1024;
    assert.ok(rss < 300, `agent RSS ${rss.toFixed(0)} MiB: nothing read /dev/zero`);
  });

  it("keeps repairing drift and applying changes meanwhile", async () => {
    sh("ip", ["netns", "exec", t.node, "nft", "flush", "ruleset"]);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "the flush opened everything");
    await eventually("table restored", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }), (r) => r === "timeout", 10_000);
    files.write("a-web.yaml", policy("web", "192.0.2.30"));
    await eventually("change applied", () => probeTcp(t, "192.0.2.30", 443, { timeoutMs: 400 }), (r) => r === "connected", 5000);
    assert.equal(await probeTcp(t, "192.0.2.10", 443, { timeoutMs: 600 }), "timeout", "the old destination denied");
    rmSync(join(files.dir, "c-fifo.yaml"));
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(count(agent.log(), /e-to-fifo\.yaml: [^\n]*skipped/), 1, "a dangling symlink is not a new problem line per poll");
  });
});

describe("the CLI reads -f through the same reader", () => {
  it("render -f /dev/zero: one clear line, exit 1", async () => {
    const r = await cli(["render", "-f", "/dev/zero"]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.deepEqual(r.stderr.trimEnd().split("\n"), ["nftegress: /dev/zero: a character device, not a regular file; only regular files (or symlinks to them) are read"]);
  });

  it("render -f FIFO returns at once with one line; a FIFO in -f DIR is skipped with a note", async () => {
    const d = tempDir();
    try {
      d.write("web.yaml", policy("web", "192.0.2.10"));
      const fifo = join(d.dir, "fifo.yaml");
      execFileSync("mkfifo", [fifo]);
      const started = performance.now();
      const r = await cli(["render", "-f", fifo, "--passwd", d.passwd, "--failsafe", "/dev/null"]);
      assert.ok(performance.now() - started < 5000, "did not block");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^nftegress: \S+fifo\.yaml: a FIFO, not a regular file/);
      const dir = await cli(["render", "-f", d.dir, "--passwd", d.passwd, "--failsafe", "/dev/null"]);
      assert.equal(dir.code, 0, dir.stderr);
      assert.match(dir.stderr, /note: \S+fifo\.yaml: a FIFO, not a regular file; .*: skipped/);
      assert.match(dir.stdout, /add element inet nftegress \w+ \{ 192\.0\.2\.10 \}/);
    } finally {
      d.remove();
    }
  });
});
