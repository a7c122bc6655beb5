// The evaluator against the kernel: random policy sets from a fixed seed (valid by the schema;
// overlapping CIDRs of both families, port ranges, Audit and Enforce, priority ties, users and
// groups, DNAT to a Service-like address) are applied into a netns pair, and for each a few
// dozen flows are sent as real packets, as the given uid, and compared with evaluate()'s
// verdict. A disagreement prints the seed, the policies and the flow.
// NFTEGRESS_DIFF_SEED=N replays another seed.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { EgressPolicy } from "../../src/api/policy.js";
import { readIdentities } from "../../src/host/identities.js";
import type { CompileInput } from "../../src/policy/compile.js";
import { evaluate, type Flow } from "../../src/policy/evaluate.js";
import { cli } from "../support/exec.js";
import { tempDir, type TempDir } from "../support/files.js";
import { TCP_PORTS, UDP_PORTS, WORLD_V4, WORLD_V6, createTopology, nftIn, probeTcp, probeUdp, type Topology } from "../support/netns.js";
import { rng } from "../support/random.js";

const SEED = Number(process.env["NFTEGRESS_DIFF_SEED"] ?? 1313);
const SETS = 10;
const FLOWS = 40;

// Service-like DNAT in another table: 192.0.2.99:443 -> 192.0.2.10:443, 192.0.2.99:8443 -> 192.0.2.20:443.
const VIP = "192.0.2.99";
const DNAT = `table ip svc {\n chain out {\n type nat hook output priority -100; policy accept;\n ip daddr ${VIP} tcp dport 443 dnat to 192.0.2.10:443\n ip daddr ${VIP} tcp dport 8443 dnat to 192.0.2.20:443\n }\n}\n`;

const CIDRS = ["192.0.2.0/24", "192.0.2.0/28", "192.0.2.16/28", "192.0.2.20", "192.0.2.99", "192.0.2.96/29", "192.0.2.99", "198.51.100.0/24", "198.51.100.40/31", "203.0.113.0/25", "0.0.0.0/0", "2001:db8:1::/48", "2001:db8::/32", "2001:db8:2::10", "::/0"];
const PORTS = [
  { protocol: "TCP", port: 443 },
  { protocol: "TCP", port: 22 },
  { protocol: "TCP", port: 8443 },
  { protocol: "TCP", port: 80, endPort: 443 },
  { protocol: "TCP", port: 8080, endPort: 9418 },
  { protocol: "TCP" },
  { protocol: "UDP", port: 53 },
  { protocol: "UDP", port: 100, endPort: 200 },
  { protocol: "UDP" },
  { protocol: "ICMP" },
  { protocol: "ICMPv6" },
  { protocol: "SCTP", port: 443 },
];
const NAMES = ["alpha", "alpha-b", "alpha.b", "beta", "p9", "p10"];
const UIDS = [0, 4242, 1001];

interface Case {
  policies: EgressPolicy[];
  flows: { flow: Flow; probe: { protocol: "TCP" | "UDP"; addr: string; port: number; uid: number } }[];
}

function generate(seed: number): Case {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const some = <T>(xs: readonly T[], max: number): T[] => [...new Set(Array.from({ length: 1 + Math.floor(r() * max) }, () => pick(xs)))];
  const names = some(NAMES, 4);
  const policies = names.map((name) => {
    const rules = Array.from({ length: 1 + Math.floor(r() * 4) }, (_, i) => {
      const rule: Record<string, unknown> = { name: `r${i}`, action: r() < 0.5 ? "Allow" : "Deny" };
      const t = r();
      if (t < 0.05) rule["to"] = { cidrs: [] };
      else if (t < 0.9) rule["to"] = { cidrs: some(CIDRS, 3) };
      const p = r();
      if (p < 0.1) rule["ports"] = [];
      else if (p < 0.8) rule["ports"] = some(PORTS, 3);
      const u = r();
      if (u < 0.1) rule["users"] = [];
      else if (u < 0.35) rule["users"] = some(["appuser", "1001", "0"], 2);
      const g = r();
      if (g < 0.1) rule["groups"] = [];
      else if (g < 0.25) rule["groups"] = [pick(["4242", "1001", "0"])];
      return rule;
    });
    return EgressPolicy.parse({
      apiVersion: "nftegress.io/v1alpha1",
      kind: "EgressPolicy",
      metadata: { name },
      spec: { priority: pick([10, 10, 20]), mode: r() < 0.6 ? "Enforce" : "Audit", defaultAction: r() < 0.6 ? "Deny" : "Allow", denyResponse: r() < 0.7 ? "Reject" : "Drop", rules },
    });
  });
  const flows = Array.from({ length: FLOWS }, () => {
    const uid = pick(UIDS);
    const x = r();
    if (x < 0.25) {
      // Through the DNAT: the packet goes to the endpoint, the original destination is the VIP.
      const port = pick([443, 8443]);
      const to = port === 443 ? "192.0.2.10" : "192.0.2.20";
      return { flow: { uid, gid: uid, to, protocol: "TCP", port: 443, original: { to: VIP, port } } satisfies Flow, probe: { protocol: "TCP" as const, addr: VIP, port, uid } };
    }
    const protocol: "TCP" | "UDP" = x < 0.75 ? "TCP" : "UDP";
    const addr = pick([...WORLD_V4, ...WORLD_V6]);
    const port = pick(protocol === "TCP" ? TCP_PORTS : UDP_PORTS);
    return { flow: { uid, gid: uid, to: addr, protocol, port } satisfies Flow, probe: { protocol, addr, port, uid } };
  });
  return { policies, flows };
}

describe("differential: evaluate() against the kernel", () => {
  let t: Topology;
  let files: TempDir;
  const seen: Record<string, number> = {};
  before(async () => {
    t = await createTopology("diff");
    files = tempDir();
    nftIn(t.node, DNAT);
  });
  after(async () => {
    await t?.close();
    files?.remove();
  });

  for (let s = 0; s < SETS; s++) {
    const seed = SEED + s;
    it(`seed ${seed}: ${FLOWS} flows agree`, async () => {
      const c = generate(seed);
      files.write("p.yaml", c.policies.map((p) => `---\n${JSON.stringify(p)}\n`).join(""));
      const applied = await cli(["apply", "-f", files.dir, "--netns", t.node, "--passwd", files.passwd, "--group", "/dev/null", "--failsafe", "/dev/null", "--state-dir", files.state]);
      assert.equal(applied.code, 0, applied.stderr);
      const input: CompileInput = {
        policies: c.policies,
        node: { name: "node", labels: {} },
        addressSets: [],
        identities: readIdentities(files.passwd, "/dev/null"),
        fqdns: new Map(),
        cgroups: new Map(),
        guard: { apiServers: [], failsafe: [], localPods: [], nodes: [] },
      };
      const disagreements: string[] = [];
      // Probes in small parallel batches: a drop costs its whole timeout.
      for (let i = 0; i < c.flows.length; i += 8) {
        await Promise.all(
          c.flows.slice(i, i + 8).map(async ({ flow, probe }) => {
            const e = evaluate(input, flow);
            const res = probe.protocol === "TCP" ? await probeTcp(t, probe.addr, probe.port, { uid: probe.uid, timeoutMs: 900 }) : await probeUdp(t, probe.addr, probe.port, { uid: probe.uid, timeoutMs: 900 });
            const kernel = res === "connected" ? "Allow" : "Deny";
            const viaOriginal = e.path.some((p) => p.step === "rule" && p.original);
            const kind = `${e.verdict}/${e.decidedBy.kind}${e.audit.length ? "+audit" : ""}${viaOriginal ? "+original" : ""}`;
            seen[kind] = (seen[kind] ?? 0) + 1;
            if (kernel !== e.verdict) disagreements.push(`${JSON.stringify(flow)}: kernel ${res}, evaluate ${e.verdict} by ${JSON.stringify(e.decidedBy)}`);
          }),
        );
      }
      // The CLI's explain reads the same files the same way: spot-check one flow end to end.
      const first = c.flows[0];
      if (first && !first.flow.original) {
        const r = await cli(["explain", "-f", files.dir, "--passwd", files.passwd, "--group-file", "/dev/null", "--failsafe", "/dev/null", "--to", first.flow.to, "--protocol", first.flow.protocol, "--port", String(first.flow.port), "--user", String(first.flow.uid), "--group", String(first.flow.gid), "-o", "json"]);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(JSON.parse(r.stdout).decidedBy, evaluate(input, first.flow).decidedBy);
      }
      assert.deepEqual(disagreements, [], `seed ${seed}, policies:\n${c.policies.map((p) => JSON.stringify(p.spec)).join("\n")}`);
    });
  }

  it("the sample covers every kind of outcome", () => {
    // Else it could not catch a wrong verdict of that kind.
    for (const k of ["Allow/rule", "Deny/rule", "Allow/default", "Deny/default"]) assert.ok(Object.keys(seen).some((s) => s.startsWith(k)), `${k} never seen: ${JSON.stringify(seen)}`);
    assert.ok(Object.keys(seen).some((s) => s.includes("+audit")), `no Audit would-deny seen: ${JSON.stringify(seen)}`);
    assert.ok(Object.keys(seen).some((s) => s.includes("+original")), `no match on a DNATed flow's original destination: ${JSON.stringify(seen)}`);
  });
});
