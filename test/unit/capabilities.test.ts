// The agent's start-up checks: CAP_NET_ADMIN from /proc/PID/status, and --owner-daemonset.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { CAP_NET_ADMIN, effectiveCaps, hasCap, netAdminMissing } from "../../src/host/capabilities.js";
import { parseOwnerRef } from "../../src/agent/ownerref.js";
import { tempDir } from "../support/files.js";

// CapEff of a container with capabilities drop [ALL] add [NET_ADMIN]: only bit 12.
const NET_ADMIN_ONLY = "Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n";
// The same container with add [] (every capability dropped).
const NONE = "Name:\tnode\nCapEff:\t0000000000000000\n";
// runc's default set without NET_ADMIN (chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap).
const DEFAULT_NO_NET_ADMIN = "CapEff:\t00000000a80425fb\n";

describe("capabilities", () => {
  it("reads the effective mask and tests single bits", () => {
    assert.equal(effectiveCaps(NET_ADMIN_ONLY), 0x1000n);
    assert.equal(effectiveCaps("Name:\tx\n"), null);
    assert.equal(hasCap(0x1000n, CAP_NET_ADMIN), true);
    assert.equal(hasCap(0xa80425fbn, CAP_NET_ADMIN), false);
  });

  it("says clearly when CAP_NET_ADMIN is missing, and nothing when it is there", () => {
    const dir = tempDir();
    try {
      const file = (text: string): string => dir.write(`status-${text.length}`, text);
      assert.equal(netAdminMissing(file(NET_ADMIN_ONLY)), null);
      for (const text of [NONE, DEFAULT_NO_NET_ADMIN]) {
        const msg = netAdminMissing(file(text));
        assert.ok(msg?.startsWith("missing capability CAP_NET_ADMIN"), String(msg));
        assert.match(msg ?? "", /capabilities\.add \[NET_ADMIN\]/);
        assert.ok(!msg?.includes("\n"), "one line");
      }
      // Cannot tell (no /proc): no false alarm.
      assert.equal(netAdminMissing(join(dir.dir, "absent")), null);
    } finally {
      dir.remove();
    }
  });

  it("parses --owner-daemonset NAMESPACE/NAME and rejects anything else", () => {
    assert.deepEqual(parseOwnerRef("nftegress-system/nftegress-agent"), { namespace: "nftegress-system", name: "nftegress-agent" });
    for (const bad of ["", "agent", "/agent", "ns/", "ns/a/b", "NS/agent", "ns/agent-", "ns agent"]) assert.equal(parseOwnerRef(bad), null, bad);
  });
});
