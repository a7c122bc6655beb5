// The host's time servers for the NTP failsafe: each configuration format parsed (pure), the
// files and their includes read under a root, names resolved through the resolver's answers.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { TimeServerAddresses, parseChrony, parseNtpConf, parseTimesyncd, readTimeConfig, timesyncdServers } from "../../src/host/timeservers.js";

function root(files: Record<string, string>): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "nftegress-time-"));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, p)), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

describe("time servers: chrony", () => {
  it("reads server, pool and peer with options after the host, IPv6 and bracketed IPv6, skips comments", () => {
    const f = parseChrony(`# Debian default
! a comment
; another
% and another
pool 2.debian.pool.ntp.org iburst maxsources 4
server 10.10.0.20 iburst prefer
Server ntp1.example.com   minpoll 4 maxpoll 6
peer 2001:db8::123 key 1
server [2001:db8::124] iburst
server fe80::1%eth0
#server 192.0.2.99
server
server bad_host!name
makestep 1 3
`);
    assert.deepEqual(f.servers, ["2.debian.pool.ntp.org", "10.10.0.20", "ntp1.example.com", "2001:db8::123", "2001:db8::124", "fe80::1"]);
  });

  it("follows include globs, confdir (first dir wins per name) and sourcedir *.sources", () => {
    const r = root({
      "etc/chrony/chrony.conf": "confdir /etc/chrony/conf.d /usr/lib/chrony/conf.d\nsourcedir /etc/chrony/sources.d\ninclude /etc/chrony/extra/*.conf\npool 2.debian.pool.ntp.org iburst\n",
      "etc/chrony/conf.d/a.conf": "server 192.0.2.1\n",
      "usr/lib/chrony/conf.d/a.conf": "server 192.0.2.66\n",
      "usr/lib/chrony/conf.d/b.conf": "server 192.0.2.2\n",
      "etc/chrony/sources.d/dhcp.sources": "server 192.0.2.3 iburst\n",
      "etc/chrony/sources.d/ignored.txt": "server 192.0.2.67\n",
      "etc/chrony/extra/x.conf": "peer 2001:db8::7\ninclude /etc/chrony/chrony.conf\n",
    });
    try {
      const c = readTimeConfig(r.dir);
      assert.deepEqual(c.servers.sort(), ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2.debian.pool.ntp.org", "2001:db8::7"].sort());
      assert.ok(!c.servers.includes("192.0.2.66"), "a.conf of the first confdir wins");
      assert.ok(!c.servers.includes("192.0.2.67"), "only *.sources in a sourcedir");
    } finally {
      r.remove();
    }
  });

  it("reads RHEL's /etc/chrony.conf too", () => {
    const r = root({ "etc/chrony.conf": "server 169.254.169.123 prefer iburst\npool 2.rhel.pool.ntp.org iburst\n" });
    try {
      assert.deepEqual(readTimeConfig(r.dir).servers, ["169.254.169.123", "2.rhel.pool.ntp.org"]);
    } finally {
      r.remove();
    }
  });
});

describe("time servers: systemd-timesyncd", () => {
  it("NTP= and FallbackNTP= in [Time], space-separated; other sections and keys ignored", () => {
    const f = parseTimesyncd("[Time]\nNTP=10.10.0.20 ntp.example.com 2001:db8::123\nFallbackNTP=time.example.org\nRootDistanceMaxSec=5\n[Other]\nNTP=192.0.2.99\n");
    assert.deepEqual(f.ntp, ["10.10.0.20", "ntp.example.com", "2001:db8::123"]);
    assert.deepEqual(f.fallback, ["time.example.org"]);
  });

  it("drop-ins override in order, an empty assignment resets, the shipped #FallbackNTP= is the default", () => {
    const r = root({
      "etc/systemd/timesyncd.conf": "[Time]\n#NTP=\n#FallbackNTP=0.debian.pool.ntp.org 1.debian.pool.ntp.org\n",
      "etc/systemd/timesyncd.conf.d/10-site.conf": "[Time]\nNTP=192.0.2.10 192.0.2.11\n",
      "usr/lib/systemd/timesyncd.conf.d/20-vendor.conf": "[Time]\nNTP=192.0.2.12\n",
      "run/systemd/timesyncd.conf.d/10-site.conf": "[Time]\nNTP=192.0.2.99\n",
    });
    try {
      assert.deepEqual(readTimeConfig(r.dir).servers, ["192.0.2.12", "0.debian.pool.ntp.org", "1.debian.pool.ntp.org"], "20-vendor.conf last; /etc's 10-site.conf shadows /run's");
    } finally {
      r.remove();
    }
    assert.deepEqual(timesyncdServers([parseTimesyncd("[Time]\nNTP=192.0.2.1\n"), parseTimesyncd("[Time]\nNTP=\n")]), [], "an empty NTP= resets the list");
    assert.deepEqual(timesyncdServers([parseTimesyncd("[Time]\n#FallbackNTP=a.example\n"), parseTimesyncd("[Time]\nFallbackNTP=\n")]), [], "FallbackNTP= set (even empty) replaces the shipped default");
  });
});

describe("time servers: ntpd and ntpsec", () => {
  it("server/pool/peer with -4/-6 and options, includefile, reference clocks and comments skipped", () => {
    const f = parseNtpConf("driftfile /var/lib/ntp/ntp.drift\npool 0.debian.pool.ntp.org iburst\nserver -6 2001:db8::123 iburst # the lab\npeer 10.10.0.21\nserver 127.127.1.0\n# server 192.0.2.99\nrestrict default kod\nincludefile /etc/ntp.d/site.conf\n");
    assert.deepEqual(f.servers, ["0.debian.pool.ntp.org", "2001:db8::123", "10.10.0.21"]);
    assert.deepEqual(f.includes, ["/etc/ntp.d/site.conf"]);
    const r = root({ "etc/ntpsec/ntp.conf": "includefile /etc/ntpsec/site.conf\nserver 192.0.2.5\n", "etc/ntpsec/site.conf": "pool ntp.example.com\n" });
    try {
      assert.deepEqual(readTimeConfig(r.dir).servers, ["192.0.2.5", "ntp.example.com"]);
    } finally {
      r.remove();
    }
  });
});

describe("time servers: none, unreadable, loops", () => {
  it("no configuration: no server; an include loop ends", () => {
    const empty = root({});
    const loop = root({ "etc/chrony/chrony.conf": "include /etc/chrony/chrony.conf\nserver 192.0.2.1\n", "etc/ntp.conf": "includefile /etc/ntp.conf\n" });
    try {
      assert.deepEqual(readTimeConfig(empty.dir), { servers: [], files: [] });
      assert.deepEqual(readTimeConfig(loop.dir).servers, ["192.0.2.1"]);
    } finally {
      empty.remove();
      loop.remove();
    }
  });
});

describe("time servers: addresses", () => {
  it("addresses as given, names through the answers; pool addresses stay open for the retention time", () => {
    let now = 0;
    const t = new TimeServerAddresses(1000, 3, () => now);
    const servers = ["10.10.0.20", "pool.example.com", "down.example.com"];
    let r = t.resolve(servers, new Map([["pool.example.com", ["192.0.2.1", "192.0.2.2"]]]));
    assert.deepEqual(r, { addresses: ["10.10.0.20", "192.0.2.1", "192.0.2.2"], unresolved: ["down.example.com"] });
    now = 500;
    r = t.resolve(servers, new Map([["pool.example.com", ["192.0.2.3"]]]));
    assert.deepEqual(r.addresses.sort(), ["10.10.0.20", "192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    now = 1400;
    r = t.resolve(servers, new Map([["pool.example.com", ["192.0.2.4", "192.0.2.5"]]]));
    assert.deepEqual(r.addresses.sort(), ["10.10.0.20", "192.0.2.3", "192.0.2.4", "192.0.2.5"], "seen more than 1000 ms ago: dropped");
    r = t.resolve(servers, new Map([["pool.example.com", ["192.0.2.6"]]]));
    assert.equal(r.addresses.length, 4, "at most 3 per name (the newest)");
    assert.ok(!r.addresses.includes("192.0.2.3"));
  });
});
