// The CRDs against a real kube-apiserver: they install and become Established, the served
// schema keeps its CEL rules, the example policy is accepted, and bad input is rejected by
// the API server itself (OpenAPI schema and CEL), with a message naming the problem.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import yaml from "js-yaml";
import { z } from "zod";
import { ROOT } from "../support/exec.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const API_VERSION = "nftegress.io/v1alpha1";

const Crd = z.object({
  metadata: z.object({ name: z.string() }),
  status: z.object({ conditions: z.array(z.object({ type: z.string(), status: z.string() })) }).optional(),
});

const Policy = z.object({
  metadata: z.object({ name: z.string(), generation: z.number() }),
  spec: z.object({ mode: z.string() }),
  status: z.object({
    observedGeneration: z.number(),
    nodes: z.object({ selected: z.number(), applied: z.number(), failed: z.number(), pending: z.number() }),
    denied: z.object({ packets: z.number(), bytes: z.number() }),
    conditions: z.array(z.object({ type: z.string(), status: z.string(), reason: z.string() })),
  }),
});

const CelRule = z.object({ rule: z.string(), message: z.string().optional() });

/** Every "path: rule => message" of x-kubernetes-validations found under value. */
function celRules(value: unknown, path = ""): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => celRules(v, `${path}[${i}]`));
  if (typeof value !== "object" || value === null) return [];
  const out: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    if (key === "x-kubernetes-validations" && Array.isArray(v)) {
      for (const r of z.array(CelRule).parse(v)) out.push(`${path}: ${r.rule} => ${r.message ?? ""}`);
    } else {
      out.push(...celRules(v, `${path}.${key}`));
    }
  }
  return out.sort();
}

/** The spec.versions[].schema of a CRD document, as plain data. */
function schemaOf(crd: unknown): unknown {
  return z.object({ spec: z.object({ versions: z.array(z.object({ schema: z.unknown() })) }) }).parse(crd).spec.versions.map((v) => v.schema);
}

function policy(name: string, spec: Record<string, unknown>): string {
  return JSON.stringify({ apiVersion: API_VERSION, kind: "EgressPolicy", metadata: { name }, spec });
}

const rule = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name: "r1",
  action: "Allow",
  to: { cidrs: ["192.0.2.0/24"] },
  ports: [{ protocol: "TCP", port: 443 }],
  ...extra,
});

describe("CRDs on a real kube-apiserver", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
  });
  after(async () => {
    await cluster?.stop();
  });

  it("installs all three CRDs Established, with their CEL rules served", async () => {
    const files = readdirSync(join(ROOT, "crds")).filter((f) => f.endsWith(".yaml")).sort();
    assert.equal(files.length, 3);
    let total = 0;
    for (const file of files) {
      const local: unknown = yaml.load(readFileSync(join(ROOT, "crds", file), "utf8"));
      const name = Crd.parse(local).metadata.name;
      const r = await cluster.kubectl(["get", "crd", name, "-o", "json"]);
      assert.equal(r.code, 0, r.stderr);
      const served: unknown = JSON.parse(r.stdout);
      const conds = Crd.parse(served).status?.conditions ?? [];
      assert.ok(conds.some((c) => c.type === "Established" && c.status === "True"), `${name}: ${JSON.stringify(conds)}`);
      const want = celRules(schemaOf(local));
      assert.deepEqual(celRules(schemaOf(served)), want, `${name}: served CEL rules differ from ${file}`);
      total += want.length;
    }
    assert.ok(total >= 4, `expected the CEL rules of the CRD files, found ${total}`);
  });

  it("accepts examples/baseline.yaml and prints the policy columns", async () => {
    const applied = await cluster.kubectl(["apply", "-f", join(ROOT, "examples", "baseline.yaml")]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /egresspolicy\.nftegress\.io\/app-baseline created/);
    assert.match(applied.stdout, /egressaddressset\.nftegress\.io\/corp-mirrors created/);
    assert.equal(applied.stderr, "", "no warnings (e.g. unknown or duplicate fields)");

    const got = await cluster.kubectl(["get", "egresspolicies"]);
    assert.equal(got.code, 0, got.stderr);
    const [header, row] = got.stdout.trim().split("\n").map((l) => l.trim().split(/\s+/));
    assert.deepEqual(header, ["NAME", "MODE", "SELECTED", "APPLIED", "DENIED", "READY", "STATUS", "AGE"]);
    assert.deepEqual(row?.slice(0, 2), ["app-baseline", "Audit"]);
  });

  const invalid: { what: string; spec: Record<string, unknown>; expect: RegExp[] }[] = [
    {
      what: "invalid CIDR",
      spec: { rules: [rule({ to: { cidrs: ["10.0.0.256/32"] } })] },
      expect: [/spec\.rules\[0\]\.to\.cidrs\[0\]/, /must be an IP address or a CIDR without host bits/],
    },
    {
      what: "CIDR with host bits",
      spec: { rules: [rule({ to: { cidrs: ["10.0.0.1/8"] } })] },
      expect: [/spec\.rules\[0\]\.to\.cidrs\[0\]/, /must be an IP address or a CIDR without host bits/],
    },
    {
      what: "port 0",
      spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 0 }] })] },
      expect: [/spec\.rules\[0\]\.ports\[0\]\.port/, /greater than or equal to 1/],
    },
    {
      what: "port 70000",
      spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 70000 }] })] },
      expect: [/spec\.rules\[0\]\.ports\[0\]\.port/, /less than or equal to 65535/],
    },
    {
      what: "endPort < port",
      spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 443, endPort: 80 }] })] },
      expect: [/spec\.rules\[0\]\.ports\[0\]\.endPort: /, /endPort must be >= port/],
    },
    {
      what: "port with protocol ICMP",
      spec: { rules: [rule({ ports: [{ protocol: "ICMP", port: 8 }] })] },
      expect: [/spec\.rules\[0\]\.ports\[0\]\.port: /, /port is only valid with protocol TCP, UDP or SCTP/],
    },
    {
      what: "unknown protocol HTTP",
      spec: { rules: [rule({ ports: [{ protocol: "HTTP", port: 80 }] })] },
      expect: [/spec\.rules\[0\]\.ports\[0\]\.protocol/, /Unsupported value: "HTTP"/],
    },
    {
      what: "duplicate rule names",
      spec: { rules: [rule({ name: "same" }), rule({ name: "same" })] },
      expect: [/spec\.rules: Invalid value: rule name "same" is used by rules\[0\] and rules\[1\]$/m],
    },
    {
      what: "uid above 4294967294",
      spec: { rules: [rule({ users: ["appuser", "9999999999"] })] },
      expect: [/spec\.rules\[0\]\.users\[1\]/, /a numeric id must be 0-4294967294/],
    },
    {
      what: "gid 4294967295 (no id)",
      spec: { rules: [rule({ groups: ["4294967295"] })] },
      expect: [/spec\.rules\[0\]\.groups\[0\]/, /a numeric id must be 0-4294967294/],
    },
    {
      what: "unknown field",
      spec: { rules: [rule({ foo: "bar" })] },
      expect: [/unknown field "spec\.rules\[0\]\.foo"/],
    },
    {
      what: "logging prefix with a double quote",
      spec: { logging: { enabled: true, prefix: 'bad"prefix' }, rules: [rule()] },
      expect: [/spec\.logging\.prefix/, /should match/],
    },
  ];

  for (const [i, c] of invalid.entries()) {
    it(`rejects ${c.what}`, async () => {
      const name = `invalid-${i}`;
      const r = await cluster.kubectl(["apply", "-f", "-"], policy(name, c.spec));
      assert.notEqual(r.code, 0, `accepted: ${r.stdout}`);
      for (const re of c.expect) assert.match(r.stderr, re);
      const get = await cluster.kubectl(["get", "egresspolicy", name]);
      assert.notEqual(get.code, 0, "the object must not exist");
    });
  }

  it("accepts the largest uid and gid, 4294967294", async () => {
    const r = await cluster.kubectl(["apply", "-f", "-"], policy("max-ids", { rules: [rule({ users: ["4294967294", "0"], groups: ["4294967294"] })] }));
    assert.equal(r.code, 0, r.stderr);
  });

  it("has a status subresource that ignores spec changes", async () => {
    const name = "status-sub";
    const created = await cluster.kubectl(["apply", "-f", "-"], policy(name, { mode: "Audit", rules: [rule()] }));
    assert.equal(created.code, 0, created.stderr);

    const status = {
      observedGeneration: 1,
      nodes: { selected: 3, applied: 2, failed: 0, pending: 1 },
      denied: { packets: 42, bytes: 4200 },
      conditions: [{ type: "Ready", status: "False", lastTransitionTime: new Date().toISOString(), reason: "Progressing", message: "1 node pending" }],
    };
    const patch = JSON.stringify({ status, spec: { mode: "Enforce" } });
    const patched = await cluster.kubectl(["patch", "egresspolicy", name, "--subresource=status", "--type=merge", "-p", patch]);
    assert.equal(patched.code, 0, patched.stderr);

    const got = await cluster.kubectl(["get", "egresspolicy", name, "-o", "json"]);
    assert.equal(got.code, 0, got.stderr);
    const p = Policy.parse(JSON.parse(got.stdout));
    assert.equal(p.spec.mode, "Audit", "spec change through /status is ignored");
    assert.equal(p.metadata.generation, 1, "a status write does not bump generation");
    assert.deepEqual(p.status.nodes, status.nodes);
    assert.deepEqual(p.status.denied, status.denied);
    assert.equal(p.status.conditions[0]?.reason, "Progressing");

    const table = await cluster.kubectl(["get", "egresspolicy", name, "--no-headers"]);
    assert.equal(table.code, 0, table.stderr);
    assert.deepEqual(table.stdout.trim().split(/\s+/).slice(0, 7), [name, "Audit", "3", "2", "42", "False", "Progressing"]);
  });
});
