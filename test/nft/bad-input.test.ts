// Bad input: each case gives one clear line naming the file, the object and the field, a
// non-zero exit, and leaves the kernel ruleset byte-for-byte as it was (another tool's table
// and our previously applied table included).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { openSync, closeSync, ftruncateSync, writeSync } from "node:fs";
import { cli, must, sh } from "../support/exec.js";
import { nftIn, ruleset } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";

const good = (name: string, extra = "") => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: ${name}}
spec:
  mode: Enforce
  rules:
    - name: web
      action: Allow
      to: {cidrs: ["192.0.2.0/24"]}
      ports: [{protocol: TCP, port: 443}]
${extra}`;

const withRule = (rule: string) => `apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: bad-policy}
spec:
  mode: Enforce
  rules:
${rule}`;

interface Case {
  name: string;
  text?: string;
  /** Matched against the single stderr line. */
  expect: RegExp;
}

const CASES: Case[] = [
  { name: "invalid CIDR", text: withRule(`    - {name: r, action: Allow, to: {cidrs: ["10.0.0.256/32"]}}`), expect: /EgressPolicy\/bad-policy: spec\.rules\[0\]\.to\.cidrs\[0\]: "10\.0\.0\.256\/32" is not an IPv4 or IPv6 address or CIDR/ },
  { name: "CIDR with host bits", text: withRule(`    - {name: r, action: Allow, to: {cidrs: ["10.0.0.1/8"]}}`), expect: /spec\.rules\[0\]\.to\.cidrs\[0\]: .*did you mean 10\.0\.0\.0\/8/ },
  { name: "port 0", text: withRule(`    - {name: r, action: Allow, ports: [{protocol: TCP, port: 0}]}`), expect: /spec\.rules\[0\]\.ports\[0\]\.port: .*>=1/ },
  { name: "port 70000", text: withRule(`    - {name: r, action: Allow, ports: [{protocol: TCP, port: 70000}]}`), expect: /spec\.rules\[0\]\.ports\[0\]\.port: .*<=65535/ },
  { name: "endPort < port", text: withRule(`    - {name: r, action: Allow, ports: [{protocol: TCP, port: 443, endPort: 80}]}`), expect: /spec\.rules\[0\]\.ports\[0\]\.endPort: endPort must be >= port/ },
  { name: "port with ICMP", text: withRule(`    - {name: r, action: Allow, ports: [{protocol: ICMP, port: 8}]}`), expect: /spec\.rules\[0\]\.ports\[0\]\.port: port is only valid with protocol TCP, UDP or SCTP/ },
  { name: "unknown protocol", text: withRule(`    - {name: r, action: Allow, ports: [{protocol: HTTP, port: 80}]}`), expect: /spec\.rules\[0\]\.ports\[0\]\.protocol: .*"TCP"\|"UDP"/ },
  { name: "unknown field", text: withRule(`    - {name: r, action: Allow, destination: "192.0.2.1"}`), expect: /spec\.rules\[0\]: unknown field\(s\) "destination"/ },
  { name: "duplicate rule names", text: withRule(`    - {name: r, action: Allow}\n    - {name: r, action: Deny}`), expect: /spec\.rules: rule name "r" is used by rules\[0\] and rules\[1\]$/m },
  { name: "quote in a rule name", text: withRule(`    - {name: 'a"; delete table inet other; "', action: Allow}`), expect: /spec\.rules\[0\]\.name: must be a DNS label/ },
  { name: "newline in a log prefix", text: good("bad-policy", `  logging: {enabled: true, prefix: "x\\n delete table inet other"}\n`), expect: /spec\.logging\.prefix: may only contain/ },
  { name: "semicolon in a log prefix", text: good("bad-policy", `  logging: {enabled: true, prefix: "x; flush ruleset"}\n`), expect: /spec\.logging\.prefix: may only contain/ },
  { name: "quote and semicolon in an object name", text: good(`'a"b;c'`), expect: /EgressPolicy\/a"b;c: metadata\.name: must be a DNS subdomain/ },
  { name: "newline in an object name", text: good(`"a\\nb"`), expect: /EgressPolicy\/a\?b: metadata\.name: must be a DNS subdomain/ },
  { name: "uid above 4294967294", text: withRule(`    - {name: r, action: Allow, users: ["9999999999"]}`), expect: /EgressPolicy\/bad-policy: spec\.rules\[0\]\.users\[0\]: a numeric id must be 0-4294967294/ },
  { name: "gid 4294967295", text: withRule(`    - {name: r, action: Allow, groups: ["4294967295"]}`), expect: /spec\.rules\[0\]\.groups\[0\]: a numeric id must be 0-4294967294/ },
  { name: "duplicate name in one file", text: `${good("twice")}---\n${good("twice")}`, expect: /zz-case\.yaml: document 2: EgressPolicy\/twice: metadata\.name: duplicate name, also defined in \S*zz-case\.yaml: document 1$/ },
  { name: "duplicate name across files", text: good("base-policy"), expect: /zz-case\.yaml: document 1: EgressPolicy\/base-policy: metadata\.name: duplicate name, also defined in \S*base\.yaml: document 1$/ },
  { name: "unknown user", text: withRule(`    - {name: r, action: Allow, users: [nosuchuser]}`), expect: /EgressPolicy\/bad-policy: spec\.rules\[0\]\.users\[0\]: unknown user "nosuchuser" on this node/ },
  { name: "unknown address set", text: withRule(`    - {name: r, action: Allow, to: {addressSets: [nosuchset]}}`), expect: /spec\.rules\[0\]\.to\.addressSets\[0\]: unknown EgressAddressSet "nosuchset"/ },
  { name: "empty file", text: "", expect: /contains no objects \(empty file\)/ },
  { name: "YAML syntax error", text: "apiVersion: nftegress.io/v1alpha1\nkind: EgressPolicy\nmetadata: {name: x\n", expect: /YAML syntax error: .* at line \d+, column \d+/ },
  { name: "one bad document among good ones", text: `${good("first-good")}---\n${withRule(`    - {name: r, action: Allow, to: {cidrs: ["300.0.0.0/8"]}}`)}`, expect: /document 2: EgressPolicy\/bad-policy: spec\.rules\[0\]\.to\.cidrs\[0\]/ },
  { name: "wrong kind", text: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", expect: /document 1: ConfigMap\/x: kind: expected EgressPolicy or EgressAddressSet/ },
  { name: "50 MB file", expect: /file is 50\.0 MiB, over the 4 MiB limit/ },
];

describe("bad input is refused and changes nothing", () => {
  const ns = `nfte-bad${randomBytes(3).toString("hex")}`;
  let files: TempDir;
  before(async () => {
    must("ip", ["netns", "add", ns]);
    files = tempDir();
    // Another tool's table and our own applied table: both must survive every failure.
    nftIn(ns, "table inet other {\n chain c {\n type filter hook output priority 10; policy accept;\n ip daddr 203.0.113.9 counter drop\n }\n}\n");
    files.write("base.yaml", good("base-policy"));
    const r = await cli(["apply", "-f", files.dir, "--netns", ns, "--passwd", files.passwd, "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => {
    sh("ip", ["netns", "del", ns]);
    files?.remove();
  });

  for (const c of CASES) {
    it(c.name, async () => {
      const before = ruleset(ns);
      const file = `${files.dir}/zz-case.yaml`;
      if (c.text !== undefined) files.write("zz-case.yaml", c.text);
      else {
        const fd = openSync(file, "w");
        writeSync(fd, good("big"));
        ftruncateSync(fd, 50 * 1024 * 1024);
        closeSync(fd);
      }
      try {
        for (const cmd of ["apply", "check"]) {
          const r = await cli([cmd, "-f", files.dir, "--netns", ns, "--passwd", files.passwd, ...(cmd === "apply" ? ["--state-dir", files.state] : [])]);
          assert.equal(r.code, 1, `${cmd}: exit code; stderr: ${r.stderr}`);
          assert.equal(r.stdout, "", `${cmd}: no stdout`);
          const lines = r.stderr.trimEnd().split("\n");
          assert.equal(lines.length, 1, `${cmd}: one line, got: ${r.stderr}`);
          assert.match(lines[0] ?? "", /^nftegress: /);
          assert.ok((lines[0] ?? "").includes(file), `${cmd}: names the file: ${lines[0]}`);
          assert.match(lines[0] ?? "", c.expect);
        }
        assert.equal(ruleset(ns), before, "ruleset unchanged byte for byte");
      } finally {
        sh("rm", ["-f", file]);
      }
    });
  }
});
