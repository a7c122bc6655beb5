// nftegress explain: text and JSON accounts of one flow, bad input exit 1, usage errors exit 2,
// and the kubectl plugin offering it. Offline: nothing here touches nft.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, cli, run } from "../support/exec.js";
import { tempDir, type TempDir } from "../support/files.js";
import { policyDoc } from "../support/policy.js";

const PLUGIN = join(ROOT, "dist", "src", "cmd", "kubectl-nftegress.js");

describe("nftegress explain", () => {
  let files: TempDir;
  let group: string;
  const flags = () => ["-f", files.dir, "--passwd", files.passwd, "--group-file", group, "--failsafe", "/dev/null"];
  before(() => {
    files = tempDir();
    // appuser (uid 4242, primary gid 4242) is also a member of backup: a supplementary group.
    group = join(files.dir, "..", "group");
    files.write("../group", "backup:x:34:appuser\nappuser:x:4242:\n");
    files.write(
      "p.yaml",
      policyDoc("audit-first", `  priority: 1
  mode: Audit
  defaultAction: Deny
  rules:
    - {name: only-20, action: Allow, to: {cidrs: ["192.0.2.20"]}}`) +
        policyDoc("enforced", `  priority: 50
  mode: Enforce
  defaultAction: Deny
  denyResponse: Reject
  rules:
    - {name: web, action: Allow, to: {cidrs: ["192.0.2.10"]}, ports: [{protocol: TCP, port: 443}]}
    - {name: backups, action: Allow, groups: [backup], to: {cidrs: ["198.51.100.0/24"]}}`),
    );
  });
  after(() => files?.remove());

  it("prints the decision as JSON, in exactly the documented shape", async () => {
    const r = await cli(["explain", ...flags(), "--to", "192.0.2.10", "--protocol", "TCP", "--port", "443", "-o", "json"]);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, unknown>;
    assert.deepEqual(Object.keys(j), ["verdict", "decidedBy", "audit", "path"]);
    assert.equal(j["verdict"], "Allow");
    assert.deepEqual(j["decidedBy"], { kind: "rule", policy: "enforced", rule: "web", ruleIndex: 0 });
    assert.deepEqual(j["audit"], [{ policy: "audit-first", rule: null }]);
    assert.equal((j["path"] as unknown[]).length, 3);
  });

  it("a default denial: exit 0, attributed to the first default-deny Enforce policy, in text", async () => {
    const r = await cli(["explain", ...flags(), "--to", "192.0.2.20", "--protocol", "TCP", "--port", "443", "--user", "appuser"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Deny \(Reject: a TCP reset, else ICMP admin-prohibited\): TCP to 192\.0\.2\.20:443 as uid 4242 \(appuser\), gid 4242\n/);
    assert.match(r.stdout, /EgressPolicy\/audit-first \(Audit\): rule only-20 \[0\] \(Allow\) matches: Audit: the next policy decides/);
    assert.match(r.stdout, /denied by default, counted for EgressPolicy\/enforced/);
  });

  it("groups are the socket's group, never the user's supplementary groups", async () => {
    const asUser = await cli(["explain", ...flags(), "--to", "198.51.100.40", "--protocol", "UDP", "--port", "53", "--user", "appuser", "-o", "json"]);
    assert.equal(asUser.code, 0, asUser.stderr);
    assert.deepEqual(JSON.parse(asUser.stdout).decidedBy, { kind: "default", policy: "enforced", rule: null, ruleIndex: null });
    const asGroup = await cli(["explain", ...flags(), "--to", "198.51.100.40", "--protocol", "UDP", "--port", "53", "--user", "appuser", "--group", "backup", "-o", "json"]);
    assert.deepEqual(JSON.parse(asGroup.stdout).decidedBy, { kind: "rule", policy: "enforced", rule: "backups", ruleIndex: 1 });
  });

  it("bad input is one line and exit 1", async () => {
    const cases: [string[], RegExp][] = [
      [["--to", "192.0.2.300", "--protocol", "TCP", "--port", "443"], /^nftegress: --to: "192\.0\.2\.300" is not an IPv4 or IPv6 address\n$/],
      [["--to", "2001:db8::1", "--protocol", "ICMP"], /^nftegress: ICMP goes to IPv4 addresses, not 2001:db8::1 \(use ICMPv6\)\n$/],
      [["--to", "192.0.2.10", "--protocol", "TCP", "--port", "443", "--user", "nobody-here"], /^nftegress: --user: no user "nobody-here" in .*passwd\n$/],
      [["--to", "192.0.2.10", "--protocol", "TCP", "--port", "443", "--original-to", "2001:db8::1"], /^nftegress: the original destination 2001:db8::1 and 192\.0\.2\.10 are of different families\n$/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(["explain", ...flags(), ...args]);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.stderr, msg);
    }
    const missing = await cli(["explain", "-f", join(files.dir, "nope"), "--to", "192.0.2.10", "--protocol", "TCP", "--port", "443"]);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr.trim().split("\n").length, 1);
    // A policy refused on this node fails the command, as render does.
    const other = tempDir();
    try {
      other.write("p.yaml", policyDoc("ghost", `  rules:\n    - {name: r, action: Allow, users: [ghost]}`));
      const r = await cli(["explain", "-f", other.dir, "--passwd", other.passwd, "--failsafe", "/dev/null", "--to", "192.0.2.10", "--protocol", "TCP", "--port", "443"]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /EgressPolicy\/ghost: spec\.rules\[0\]\.users\[0\]: unknown user "ghost" on this node/);
    } finally {
      other.remove();
    }
  });

  it("usage errors exit 2", async () => {
    const cases: [string[], RegExp][] = [
      [["--to", "192.0.2.10", "--protocol", "TCP", "--port", "443"], /give one of -f FILE\|DIR and --node NAME/],
      [[...flags(), "--protocol", "TCP", "--port", "443"], /--to ADDR is required/],
      [[...flags(), "--to", "192.0.2.10", "--protocol", "GRE"], /--protocol must be one of TCP, UDP, SCTP, ICMP, ICMPv6, not "GRE"/],
      [[...flags(), "--to", "192.0.2.10", "--protocol", "TCP"], /--port is required with TCP/],
      [[...flags(), "--to", "192.0.2.10", "--protocol", "ICMP", "--port", "1"], /ICMP has no ports/],
      [[...flags(), "--to", "192.0.2.10", "--protocol", "TCP", "--port", "70000"], /--port must be a port 1-65535/],
      [[...flags(), "--to", "192.0.2.10", "--protocol", "TCP", "--port", "443", "-o", "yaml"], /--output must be text or json/],
      [[...flags(), "--bogus"], /Unknown option '--bogus'/],
    ];
    for (const [args, msg] of cases) {
      const r = await cli(["explain", ...args]);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, msg, args.join(" "));
    }
    const help = await cli(["explain", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: nftegress explain/);
  });

  it("the kubectl plugin offers explain", async () => {
    const r = await run(process.execPath, [PLUGIN, "--help"]);
    assert.match(r.stdout, /explain/);
    const e = await run(process.execPath, [PLUGIN, "explain", ...flags(), "--to", "192.0.2.10", "--protocol", "TCP", "--port", "443", "-o", "json"]);
    assert.equal(e.code, 0, e.stderr);
    assert.equal(JSON.parse(e.stdout).verdict, "Allow");
    const u = await run(process.execPath, [PLUGIN, "explain", "--to", "192.0.2.10"]);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /^kubectl nftegress: give one of -f FILE\|DIR and --node NAME/);
  });
});
