// The seed scenario on real nftables and real packets: DNS and NTP only to their servers,
// HTTPS and git only to the allow-list, one user allowed one more destination, the rest
// dropped and counted. Audit first (all accepted, counted as would-deny), then Enforce.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { cli } from "../support/exec.js";
import { createTopology, probeTcp, probeUdp, type Topology } from "../support/netns.js";
import { tempDir, type TempDir } from "../support/files.js";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const policy = (mode: "Audit" | "Enforce") => `
apiVersion: nftegress.io/v1alpha1
kind: EgressPolicy
metadata: {name: app-baseline}
spec:
  priority: 100
  mode: ${mode}
  defaultAction: Deny
  rules:
    - name: dns
      action: Allow
      to: {cidrs: ["192.0.2.53/32"]}
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
    - name: ntp
      action: Allow
      to: {cidrs: ["192.0.2.123"]}
      ports: [{protocol: UDP, port: 123}]
    - name: https-allowed
      action: Allow
      to: {cidrs: ["192.0.2.10/32", "192.0.2.20/32"], addressSets: [mirrors]}
      ports: [{protocol: TCP, port: 443}, {protocol: TCP, port: 9418}]
    - name: appuser-api
      action: Allow
      users: [appuser]
      to: {cidrs: ["198.51.100.40/32"]}
      ports: [{protocol: TCP, port: 443}]
---
apiVersion: nftegress.io/v1alpha1
kind: EgressAddressSet
metadata: {name: mirrors-a, labels: {nftegress.io/set: mirrors}}
spec: {cidrs: ["203.0.113.0/28"]}
`;

interface Status {
  present: boolean;
  policies: { name: string; mode: string; denied: { packets: number }; wouldDeny: { packets: number }; topDeniedDestinations: { address: string; port?: number; protocol: string; packets: number }[]; deniedByUser: { uid: number; user?: string; packets: number }[] }[];
}

describe("seed policy on real packets", () => {
  let t: Topology;
  let files: TempDir;
  const common = () => ["--netns", t.node, "--passwd", files.passwd, "--failsafe", "/dev/null", "--state-dir", files.state];

  before(async () => {
    t = await createTopology("seed");
    files = tempDir();
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  async function status(): Promise<Status> {
    const r = await cli(["status", "--netns", t.node, "--output", "json", "--passwd", files.passwd, "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Status;
  }

  it("Audit accepts everything and counts what it would deny", async () => {
    files.write("p.yaml", policy("Audit"));
    const r = await cli(["apply", "-f", files.dir, ...common()]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /applied 1 policies/);
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected", "not allowed, but Audit accepts");
    assert.equal(await probeTcp(t, "198.51.100.41", 8080), "connected", "not allowed, but Audit accepts");
    const s = await status();
    const p = s.policies.find((x) => x.name === "app-baseline");
    assert.ok(p);
    assert.equal(p.mode, "Audit");
    assert.equal(p.denied.packets, 0);
    assert.ok(p.wouldDeny.packets >= 2, `would-deny ${p.wouldDeny.packets}`);
    assert.ok(p.topDeniedDestinations.some((d) => d.address === "192.0.2.30" && d.port === 443 && d.protocol === "tcp"));
  });

  it("Enforce allows exactly the allow-list and drops the rest", async () => {
    files.write("p.yaml", policy("Enforce"));
    const r = await cli(["apply", "-f", files.dir, ...common()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await probeUdp(t, "192.0.2.53", 53), "connected", "DNS over UDP to the resolver");
    assert.equal(await probeTcp(t, "192.0.2.53", 53), "connected", "DNS over TCP to the resolver");
    assert.equal(await probeUdp(t, "192.0.2.123", 123), "connected", "NTP to its server");
    assert.equal(await probeUdp(t, "192.0.2.10", 53), "eperm", "DNS to another server: dropped on output");
    assert.equal(await probeUdp(t, "192.0.2.53", 123), "eperm", "NTP to the DNS server: dropped on output");
    assert.equal(await probeTcp(t, "192.0.2.10", 443), "connected");
    assert.equal(await probeTcp(t, "192.0.2.20", 9418), "connected", "git");
    assert.equal(await probeTcp(t, "203.0.113.5", 443), "connected", "address set");
    assert.equal(await probeTcp(t, "203.0.113.77", 443, { timeoutMs: 800 }), "timeout", "outside the address set's /28");
    assert.equal(await probeTcp(t, "192.0.2.10", 80, { timeoutMs: 800 }), "timeout", "allowed host, other port");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout");
    assert.equal(await probeTcp(t, "198.51.100.40", 443, { timeoutMs: 800 }), "timeout", "root may not");
    assert.equal(await probeTcp(t, "198.51.100.40", 443, { uid: 4242 }), "connected", "appuser may");
    assert.equal(await probeTcp(t, "198.51.100.41", 443, { uid: 4242, timeoutMs: 800 }), "timeout", "appuser, other host");
    const s = await status();
    const p = s.policies.find((x) => x.name === "app-baseline");
    assert.ok(p);
    assert.equal(p.mode, "Enforce");
    assert.ok(p.denied.packets >= 6, `denied ${p.denied.packets}`);
    const top = p.topDeniedDestinations;
    assert.ok(top.some((d) => d.address === "192.0.2.30" && d.port === 443 && d.protocol === "tcp" && d.packets >= 1), JSON.stringify(top));
    assert.ok(top.some((d) => d.address === "192.0.2.10" && d.port === 53 && d.protocol === "udp"), JSON.stringify(top));
    assert.ok(p.deniedByUser.some((u) => u.uid === 4242 && u.user === "appuser" && u.packets >= 1), JSON.stringify(p.deniedByUser));
    assert.ok(p.deniedByUser.some((u) => u.uid === 0), JSON.stringify(p.deniedByUser));
  });

  it("status prints the table for humans", async () => {
    const r = await cli(["status", "--netns", t.node, "--passwd", files.passwd, "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /app-baseline\s+Enforce\s+100/);
    assert.match(r.stdout, /top denied destinations of app-baseline/);
    assert.match(r.stdout, /4242\s+appuser/);
  });

  it("cleanup removes the table and everything is reachable again", async () => {
    const r = await cli(["cleanup", "--netns", t.node, "--state-dir", files.state]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await probeTcp(t, "192.0.2.30", 443), "connected");
    const again = await cli(["cleanup", "--netns", t.node, "--state-dir", files.state]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /nothing to do/);
    assert.equal((await status()).present, false);
  });
});

// The same policy with the default failsafe (issue 12 item 2): the guard opens NTP only to
// the host's configured time server (a chrony file under --time-root) and the overlay ports
// only to the node addresses (--node-addresses), never to any address.
describe("seed policy with the default failsafe on real packets", () => {
  let t: Topology;
  let files: TempDir;
  let root: string;
  const chrony = (servers: string[]) => {
    mkdirSync(join(root, "etc", "chrony"), { recursive: true });
    writeFileSync(join(root, "etc", "chrony", "chrony.conf"), `# test host\n${servers.map((s) => `server ${s} iburst\n`).join("")}makestep 1 3\n`);
  };
  const host = () => ["--passwd", files.passwd, "--resolv-conf", join(root, "resolv.conf"), "--time-root", root, "--node-addresses", "192.0.2.10"];
  const common = () => [...host(), "--netns", t.node, "--state-dir", files.state];

  before(async () => {
    t = await createTopology("seedfs");
    files = tempDir();
    root = mkdtempSync(join(tmpdir(), "nftegress-root-"));
    writeFileSync(join(root, "resolv.conf"), "nameserver 192.0.2.53\n");
  });
  after(async () => {
    await t?.close();
    files?.remove();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("NTP only to the configured time server, overlay only to the node addresses", async () => {
    chrony(["192.0.2.123"]);
    files.write("p.yaml", policy("Enforce"));
    const rendered = await cli(["render", "-f", files.dir, ...host()]);
    assert.equal(rendered.code, 0, rendered.stderr);
    assert.match(rendered.stdout, /^# {3}ntp: UDP 123 -> 192\.0\.2\.123$/m);
    assert.match(rendered.stdout, /^# {3}vxlan: UDP 4789,8472 -> 192\.0\.2\.10$/m);
    const guardRules = rendered.stdout.split("\n").filter((l) => l.startsWith("add rule inet nftegress guard ") && !/guard:(established|replies|related|loopback|ipv6-nd-mld|dhcpv4|dhcpv6) /.test(l));
    assert.ok(guardRules.length >= 5, rendered.stdout);
    for (const l of guardRules) assert.match(l, / (ip|ip6) daddr /, `a guard rule without destination: ${l}`);
    const r = await cli(["apply", "-f", files.dir, ...common()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await probeUdp(t, "192.0.2.123", 123), "connected", "NTP to the configured time server");
    assert.equal(await probeUdp(t, "192.0.2.53", 123), "eperm", "NTP to a server neither the host nor the policy names");
    assert.equal(await probeUdp(t, "192.0.2.53", 53), "connected", "DNS to the resolver");
    assert.equal(await probeUdp(t, "192.0.2.10", 4789), "connected", "VXLAN to a node address");
    assert.equal(await probeUdp(t, "192.0.2.20", 4789), "eperm", "VXLAN to a world address");
    assert.equal(await probeTcp(t, "192.0.2.30", 443, { timeoutMs: 800 }), "timeout", "the policy still denies the rest");
  });

  it("the NTP entry follows the host's configuration: a time server the policy does not allow", async () => {
    chrony(["192.0.2.53"]);
    const r = await cli(["apply", "-f", files.dir, ...common()]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await probeUdp(t, "192.0.2.53", 123), "connected", "the host's time server, allowed by the guard alone");
    assert.equal(await probeUdp(t, "192.0.2.123", 123), "connected", "allowed by the policy's own ntp rule");
    chrony([]);
    const again = await cli(["apply", "-f", files.dir, ...common()]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(await probeUdp(t, "192.0.2.53", 123), "eperm", "no time server configured: the guard opens no NTP");
  });
});
