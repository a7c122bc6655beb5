// What kubectl users see, against a real kube-apiserver: `kubectl explain` documents every
// field (the served OpenAPI v3 carries a description with its default and constraints); the
// API server rejects bad objects naming the same field path as `nftegress check`; the printer
// columns (Table responses, with statuses the real controller wrote) show a policy that
// selects no node; and the CLI runs as the kubectl plugin `kubectl nftegress`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { delimiter, dirname, join } from "node:path";
import yaml from "js-yaml";
import { z } from "zod";
import { eventually, startController, type AgentProcess } from "../support/agent.js";
import { ROOT, cli, run, type Result } from "../support/exec.js";
import { tempDir, type TempDir } from "../support/files.js";
import { startCluster, type Cluster } from "./support/cluster.js";

const GROUP_PATH = "/apis/nftegress.io/v1alpha1";
const KINDS = ["EgressPolicy", "EgressAddressSet", "NodeEgressReport"];
const SAFE = Number.MAX_SAFE_INTEGER;

interface Schema {
  description?: string;
  type?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  maxItems?: number;
  pattern?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  "x-kubernetes-validations"?: { message?: string }[];
}
const SchemaZ: z.ZodType<Schema> = z.lazy(() =>
  z.looseObject({
    description: z.string().optional(),
    type: z.string().optional(),
    default: z.unknown().optional(),
    enum: z.array(z.unknown()).optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    maxLength: z.number().optional(),
    maxItems: z.number().optional(),
    pattern: z.string().optional(),
    properties: z.record(z.string(), SchemaZ).optional(),
    items: SchemaZ.optional(),
    "x-kubernetes-validations": z.array(z.looseObject({ message: z.string().optional() })).optional(),
  }),
);
const OpenApi = z.object({ components: z.object({ schemas: z.record(z.string(), SchemaZ) }) });

/** Every field under schema, as [path, schema] (array items descend without a path step). */
function fields(schema: Schema, path: string): [string, Schema][] {
  const out: [string, Schema][] = [];
  for (const [k, v] of Object.entries(schema.properties ?? {})) {
    const p = `${path}.${k}`;
    out.push([p, v]);
    out.push(...fields(v, p));
    if (v.items) out.push(...fields(v.items, p));
  }
  return out;
}

const show = (v: unknown) => (typeof v === "string" ? v : JSON.stringify(v));

/** What a field's description must state, from the schema's own keywords. */
function mustState(s: Schema): string[] {
  const out: string[] = [];
  if ("default" in s) out.push(`Default: ${show(s.default)}.`);
  for (const v of s.enum ?? []) out.push(show(v));
  if (s.minimum !== undefined && s.minimum > -SAFE) out.push(String(s.minimum));
  if (s.maximum !== undefined && s.maximum < SAFE) out.push(String(s.maximum));
  if (s.maxLength !== undefined) out.push(`${s.maxLength} characters`);
  if (s.maxItems !== undefined) out.push(`At most ${s.maxItems} entries`);
  if (s.pattern !== undefined) out.push(s.pattern);
  for (const r of s["x-kubernetes-validations"] ?? []) if (r.message) out.push(r.message);
  if (s.items) for (const t of mustState(s.items)) if (!t.startsWith("Default")) out.push(t);
  return out;
}

/** GET path from the API server with a given Accept header, as parsed JSON. */
function getJson(cluster: Cluster, path: string, accept: string): Promise<unknown> {
  const user = cluster.kc.getCurrentUser();
  const caFile = cluster.kc.getCurrentCluster()?.caFile;
  const url = new URL(path, cluster.server);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname, ca: caFile ? readFileSync(caFile) : undefined, headers: { authorization: `Bearer ${user?.token ?? ""}`, accept } },
      (res) => {
        let body = "";
        res.on("data", (b: Buffer) => (body += b.toString()));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(body)) : reject(new Error(`GET ${path}: ${res.statusCode}: ${body.slice(0, 300)}`))));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io";
const Table = z.object({
  kind: z.literal("Table"),
  columnDefinitions: z.array(z.object({ name: z.string(), type: z.string(), priority: z.number().optional() })),
  rows: z.array(z.object({ cells: z.array(z.unknown()) })),
});

function policyYaml(name: string, spec: Record<string, unknown>): string {
  return yaml.dump({ apiVersion: "nftegress.io/v1alpha1", kind: "EgressPolicy", metadata: { name }, spec });
}

const rule = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ name: "r1", action: "Allow", to: { cidrs: ["192.0.2.0/24"] }, ports: [{ protocol: "TCP", port: 443 }], ...extra });

describe("kubectl on a real kube-apiserver", () => {
  let cluster: Cluster;
  let tmp: TempDir;
  let controller: AgentProcess | undefined;

  before(async () => {
    cluster = await startCluster();
    tmp = tempDir();
  });
  after(async () => {
    await controller?.stop("SIGTERM");
    await cluster?.stop();
    tmp?.remove();
  });

  async function kubectlOk(args: string[], stdin?: string): Promise<Result> {
    const r = await cluster.kubectl(args, stdin);
    assert.equal(r.code, 0, `kubectl ${args.join(" ")}: ${r.stderr}`);
    return r;
  }

  describe("kubectl explain", () => {
    it("the served OpenAPI v3 documents every field of the three kinds, with its default and constraints", async () => {
      // The OpenAPI controller publishes a new CRD's schema shortly after it is Established.
      const raw = await eventually("openapi", () => cluster.kubectl(["get", "--raw", `/openapi/v3${GROUP_PATH}`]), (r) => r.code === 0, 20_000);
      const schemas = OpenApi.parse(JSON.parse(raw.stdout)).components.schemas;
      let checked = 0;
      for (const kind of KINDS) {
        const root = schemas[`io.nftegress.v1alpha1.${kind}`];
        assert.ok(root, `${kind} in the OpenAPI document`);
        assert.ok(root.description?.trim(), `${kind}: no description`);
        for (const [path, s] of fields(root, kind)) {
          if (path === `${kind}.metadata`) continue; // ObjectMeta, documented by the API server
          const desc = s.description ?? "";
          assert.ok(desc.trim(), `${path}: no description`);
          for (const t of mustState(s)) assert.ok(desc.includes(t), `${path}: description does not state ${JSON.stringify(t)}: ${desc}`);
          checked++;
        }
      }
      assert.ok(checked > 100, `only ${checked} fields found`);
    });

    it("kubectl explain prints a description for every field of every object, never <empty>", async () => {
      const objects: string[] = [];
      const schemas = OpenApi.parse(JSON.parse((await kubectlOk(["get", "--raw", `/openapi/v3${GROUP_PATH}`])).stdout)).components.schemas;
      for (const kind of KINDS) {
        const root = schemas[`io.nftegress.v1alpha1.${kind}`];
        for (const [path, s] of fields(root ?? {}, kind.toLowerCase())) {
          if (path.endsWith(".metadata")) continue;
          if (s.properties || s.items?.properties) objects.push(path);
        }
      }
      assert.ok(objects.includes("egresspolicy.spec") && objects.includes("egresspolicy.status.nodes") && objects.includes("nodeegressreport.status.policies"), objects.join(" "));
      for (const path of objects) {
        const r = await kubectlOk(["explain", path]);
        assert.doesNotMatch(r.stdout, /<empty>/, `kubectl explain ${path}:\n${r.stdout}`);
        assert.match(r.stdout, /DESCRIPTION:\n\s+\S/, `kubectl explain ${path}`);
      }
      const spec = (await kubectlOk(["explain", "egresspolicy.spec"])).stdout;
      assert.match(spec, /mode\t<string>\n\s+enum: Audit, Enforce\n\s+Audit counts, records and logs .* Default: Audit\./s);
      const endPort = (await kubectlOk(["explain", "egresspolicy.spec.rules.ports.endPort"])).stdout;
      assert.match(endPort, /Needs port, and must be >=\s+port\. Range: 1-65535\./);
    });
  });

  describe("the API server names the same field as nftegress check", () => {
    // message: what both say after the path (the API server after "Invalid value: "); more:
    // how many further problems the CLI's line counts (the API server's CEL rule names the first).
    const cases: { what: string; spec: Record<string, unknown>; path: string; message?: string; more?: number }[] = [
      { what: "endPort < port", spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 443, endPort: 80 }] })] }, path: "spec.rules[0].ports[0].endPort" },
      { what: "endPort without port", spec: { rules: [rule(), rule({ name: "r2", ports: [{ protocol: "UDP", endPort: 80 }] })] }, path: "spec.rules[1].ports[0].endPort" },
      { what: "port with ICMP", spec: { rules: [rule({ ports: [{ protocol: "ICMP", port: 8 }] })] }, path: "spec.rules[0].ports[0].port" },
      { what: "port with ICMPv6", spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 1 }, { protocol: "ICMPv6", port: 128 }] })] }, path: "spec.rules[0].ports[1].port" },
      { what: "two rules of one name", spec: { rules: [rule({ name: "same" }), rule({ name: "same" })] }, path: "spec.rules", message: 'rule name "same" is used by rules[0] and rules[1]' },
      { what: "a third rule repeating the first's name", spec: { rules: [rule({ name: "a" }), rule({ name: "b" }), rule({ name: "a" })] }, path: "spec.rules", message: 'rule name "a" is used by rules[0] and rules[2]' },
      {
        what: "two names used twice (the first repeat is named first)",
        spec: { rules: ["a", "b", "b", "a"].map((name) => rule({ name })) },
        path: "spec.rules",
        message: 'rule name "b" is used by rules[1] and rules[2]',
        more: 1,
      },
      { what: "port 0", spec: { rules: [rule({ ports: [{ protocol: "TCP", port: 0 }] })] }, path: "spec.rules[0].ports[0].port" },
      { what: "CIDR with host bits", spec: { rules: [rule({ to: { cidrs: ["192.0.2.0/24", "10.0.0.1/8"] } })] }, path: "spec.rules[0].to.cidrs[1]" },
      { what: "uid above 4294967294", spec: { rules: [rule({ users: ["0", "9999999999"] })] }, path: "spec.rules[0].users[1]" },
    ];
    for (const [i, c] of cases.entries()) {
      it(`${c.what}: ${c.path}`, async () => {
        const name = `bad-${i}`;
        const file = tmp.write(`${name}.yaml`, policyYaml(name, c.spec));
        const check = await cli(["check", "-f", file, "--passwd", tmp.passwd]);
        assert.equal(check.code, 1, check.stdout);
        const lines = check.stderr.trim().split("\n");
        assert.equal(lines.length, 1, check.stderr);
        const cliPath = new RegExp(`EgressPolicy/${name}: (\\S+): `).exec(lines[0] ?? "")?.[1];
        const api = await cluster.kubectl(["create", "-f", file]);
        assert.notEqual(api.code, 0, `accepted: ${api.stdout}`);
        const apiPath = new RegExp(`The EgressPolicy "${name}" is invalid: (\\S+?): `).exec(api.stderr)?.[1];
        assert.equal(cliPath, c.path, `nftegress check: ${check.stderr}`);
        assert.equal(apiPath, c.path, `API server: ${api.stderr}`);
        if (c.message !== undefined) {
          assert.ok(lines[0]?.endsWith(`: ${c.path}: ${c.message}${c.more ? ` (and ${c.more} more)` : ""}`), `nftegress check: ${check.stderr}`);
          assert.ok(api.stderr.trim().endsWith(`is invalid: ${c.path}: Invalid value: ${c.message}`), `API server: ${api.stderr}`);
        }
      });
    }
  });

  describe("server-side apply of rules by two field managers", () => {
    // Rules are an ordered first-match list, so spec.rules is atomic: a list map keyed by name
    // would merge the two managers' rules into an order neither wrote (here: team-b's Allow of
    // everything next to team-a's Deny), without a conflict.
    const RulesZ = z.array(z.looseObject({ name: z.string(), action: z.string() }));
    const teamA = [
      { name: "deny-db", action: "Deny", to: { cidrs: ["198.51.100.5"] } },
      { name: "web", action: "Allow", to: { cidrs: ["192.0.2.0/24"] }, ports: [{ protocol: "TCP", port: 443 }] },
    ];
    const teamB = [{ name: "allow-all", action: "Allow", to: { cidrs: ["0.0.0.0/0", "::/0"] } }];
    const apply = (manager: string, rules: unknown[], force: boolean) =>
      cluster.kubectl(["apply", "--server-side", "--field-manager", manager, ...(force ? ["--force-conflicts"] : []), "-f", "-"], policyYaml("ssa", { rules }));
    const rulesNow = async () => RulesZ.parse(JSON.parse((await kubectlOk(["get", "egresspolicy", "ssa", "-o", "jsonpath={.spec.rules}"])).stdout));

    // Later tests count the policies: gone even when this one fails.
    after(async () => {
      await kubectlOk(["delete", "egresspolicy", "ssa", "--ignore-not-found"]);
    });

    it("the second manager gets a conflict on spec.rules, and with --force-conflicts the rules are exactly its own", async () => {
      const a = await apply("team-a", teamA, false);
      assert.equal(a.code, 0, a.stderr);
      assert.deepEqual(await rulesNow(), teamA);

      const b = await apply("team-b", teamB, false);
      assert.notEqual(b.code, 0, `team-b's rules were applied without a conflict: ${JSON.stringify(await rulesNow())}`);
      assert.match(b.stderr, /conflict with "team-a"/, b.stderr);
      assert.match(b.stderr, /\.spec\.rules\b/, b.stderr);
      assert.deepEqual(await rulesNow(), teamA, "a refused apply changed the rules");

      const forced = await apply("team-b", teamB, true);
      assert.equal(forced.code, 0, forced.stderr);
      assert.deepEqual(await rulesNow(), teamB);
    });
  });

  describe("printer columns and the kubectl plugin, with statuses the controller wrote", () => {
    before(async () => {
      await kubectlOk(["apply", "-f", "-"], "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {role: app}}\n");
      const policies = [
        policyYaml("nowhere", { nodeSelector: { matchLabels: { role: "none" } }, mode: "Enforce", rules: [rule()] }),
        policyYaml("web", { nodeSelector: { matchLabels: { role: "app" } }, priority: 50, mode: "Enforce", rules: [rule()] }),
        policyYaml("stuck", { nodeSelector: { matchLabels: { role: "app" } }, mode: "Audit", defaultAction: "Allow", rules: [rule()] }),
      ];
      await kubectlOk(["apply", "-f", "-"], policies.join("---\n"));
      const counted = (packets: number) => ({ packets, bytes: packets * 60 });
      const report = {
        apiVersion: "nftegress.io/v1alpha1",
        kind: "NodeEgressReport",
        metadata: { name: "n1" },
        status: {
          rulesetHash: "abc",
          lastApplyTime: "2026-11-26T00:00:00Z",
          policies: [
            { name: "web", generation: 1, mode: "Enforce", result: "Applied", denied: counted(7), wouldDeny: counted(0), topDeniedDestinations: [{ address: "198.51.100.7", port: 8443, protocol: "tcp", packets: 7 }] },
            { name: "stuck", generation: 1, mode: "Audit", result: "Failed", message: "spec.rules[0].users[0]: unknown user", denied: counted(0), wouldDeny: counted(4) },
          ],
        },
      };
      await kubectlOk(["apply", "--server-side", "--field-manager", "test", "-f", "-"], JSON.stringify(report));
      controller = await startController(["--kubeconfig", cluster.kubeconfig, "--identity", "c1", "--lease-duration", "3"]);
      const reason = async (name: string) => (await kubectlOk(["get", "egresspolicy", name, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].reason}'])).stdout;
      await eventually("statuses", async () => [await reason("nowhere"), await reason("web"), await reason("stuck")].join(" "), (s) => s === "NoNodesSelected Applied NodeFailures", 30_000);
    });

    it("the Table response has a Status column (the Ready reason) and -o wide columns", async () => {
      const table = Table.parse(await getJson(cluster, `${GROUP_PATH}/egresspolicies`, TABLE));
      const cols = table.columnDefinitions.map((c) => `${c.name}:${c.priority ?? 0}`);
      assert.deepEqual(cols, ["Name:0", "Mode:0", "Selected:0", "Applied:0", "Denied:0", "Ready:0", "Status:0", "Age:0", "Priority:1", "Default:1", "Failed:1", "Pending:1", "Would-Deny:1"]);
      const row = (name: string) => {
        const cells = table.rows.find((r) => r.cells[0] === name)?.cells;
        assert.ok(cells, `row ${name}`);
        const named = Object.fromEntries(table.columnDefinitions.map((c, i) => [c.name, cells[i]]));
        delete named["Age"];
        return named;
      };
      assert.deepEqual(row("nowhere"), { Name: "nowhere", Mode: "Enforce", Selected: 0, Applied: 0, Denied: 0, Ready: "True", Status: "NoNodesSelected", Priority: 1000, Default: "Deny", Failed: 0, Pending: 0, "Would-Deny": 0 });
      assert.deepEqual(row("web"), { Name: "web", Mode: "Enforce", Selected: 1, Applied: 1, Denied: 7, Ready: "True", Status: "Applied", Priority: 50, Default: "Deny", Failed: 0, Pending: 0, "Would-Deny": 0 });
      assert.deepEqual(row("stuck"), { Name: "stuck", Mode: "Audit", Selected: 1, Applied: 0, Denied: 0, Ready: "False", Status: "NodeFailures", Priority: 1000, Default: "Allow", Failed: 1, Pending: 0, "Would-Deny": 4 });
    });

    it("kubectl get shows them, -o wide the priority 1 columns", async () => {
      const plain = (await kubectlOk(["get", "egresspolicies", "nowhere"])).stdout.trim().split("\n").map((l) => l.split(/\s+/));
      assert.deepEqual(plain[0], ["NAME", "MODE", "SELECTED", "APPLIED", "DENIED", "READY", "STATUS", "AGE"]);
      assert.deepEqual(plain[1]?.slice(0, 7), ["nowhere", "Enforce", "0", "0", "0", "True", "NoNodesSelected"]);
      const wide = (await kubectlOk(["get", "egresspolicies", "stuck", "-o", "wide"])).stdout.trim().split("\n").map((l) => l.split(/\s+/));
      assert.deepEqual(wide[0], ["NAME", "MODE", "SELECTED", "APPLIED", "DENIED", "READY", "STATUS", "AGE", "PRIORITY", "DEFAULT", "FAILED", "PENDING", "WOULD-DENY"]);
      assert.deepEqual([...(wide[1]?.slice(0, 7) ?? []), ...(wide[1]?.slice(8) ?? [])], ["stuck", "Audit", "1", "0", "0", "False", "NodeFailures", "1000", "Allow", "1", "0", "4"]);
    });

    /** A kubeconfig whose current context points at a closed port; "envtest" is the cluster. */
    function twoContexts(): string {
      const kc = z.looseObject({ clusters: z.array(z.unknown()), contexts: z.array(z.unknown()) }).parse(yaml.load(readFileSync(cluster.kubeconfig, "utf8")));
      const file = join(tmp.dir, "..", "kubeconfig");
      writeFileSync(
        file,
        yaml.dump({
          ...kc,
          clusters: [...kc.clusters, { name: "dead", cluster: { server: "https://127.0.0.1:1", "insecure-skip-tls-verify": true } }],
          contexts: [...kc.contexts, { name: "dead", context: { cluster: "dead", user: "admin" } }],
          "current-context": "dead",
        }),
      );
      return file;
    }

    function pluginEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
      // kubectl finds plugins on PATH; the plugin's script runs `node`.
      const path = [join(ROOT, "bin"), dirname(process.execPath), dirname(cluster.kubectlPath), process.env["PATH"] ?? ""].join(delimiter);
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: path };
      delete env["KUBECONFIG"];
      return { ...env, ...extra };
    }

    it("kubectl-nftegress top reads --kubeconfig and --context", async () => {
      const kubeconfig = twoContexts();
      const r = await run("kubectl-nftegress", ["top", "--kubeconfig", kubeconfig, "--context", "envtest", "-n", "default"], undefined, pluginEnv());
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^POLICY\s+MODE\s+SELECTED\s+APPLIED\s+FAILED\s+DENIED\s+WOULD-DENY\s+TOP-DESTINATION\s+READY\n/);
      assert.match(r.stdout, /\nweb\s+Enforce\s+1\s+1\s+0\s+7\s+0\s+198\.51\.100\.7:8443\/tcp \(7\)\s+True Applied\n/);
      assert.match(r.stdout, /\nstuck\s+Audit\s+1\s+0\s+1\s+0\s+4\s+-\s+False NodeFailures\n/);
      assert.match(r.stdout, /\nnowhere\s+Enforce\s+0\s+0\s+0\s+0\s+0\s+-\s+True NoNodesSelected\n?$/);
      // Without --context the current context is used: the dead one.
      const current = await run("kubectl-nftegress", ["top", "--kubeconfig", kubeconfig], undefined, pluginEnv());
      assert.equal(current.code, 1, current.stdout);
      assert.match(current.stderr, /^kubectl nftegress: listing EgressPolicies from https:\/\/127\.0\.0\.1:1: .*\n$/);
    });

    it("kubectl nftegress top and suggest run through kubectl itself, with $KUBECONFIG", async () => {
      const env = pluginEnv({ KUBECONFIG: twoContexts() });
      const top = await run(cluster.kubectlPath, ["nftegress", "top", "--context", "envtest", "-o", "json"], undefined, env);
      assert.equal(top.code, 0, top.stderr);
      const rows = z.array(z.object({ policy: z.string(), ready: z.string() })).parse(JSON.parse(top.stdout));
      assert.deepEqual(rows.map((x) => `${x.policy}: ${x.ready}`).sort(), ["nowhere: True NoNodesSelected", "stuck: False NodeFailures", "web: True Applied"]);
      const sug = await run(cluster.kubectlPath, ["nftegress", "suggest", "web", "--context", "envtest"], undefined, env);
      assert.equal(sug.code, 0, sug.stderr);
      assert.match(sug.stdout, /name: suggested-tcp-8443\n\s+action: Allow\n\s+to:\n\s+cidrs:\n\s+- 198\.51\.100\.7\/32/);
    });

    it("a context the kubeconfig lacks is one error line and exit 1; a bad command exit 2", async () => {
      const kubeconfig = twoContexts();
      for (const args of [["top", "--kubeconfig", kubeconfig, "--context", "nope"], ["suggest", "web", "--kubeconfig", kubeconfig, "--context", "nope"]]) {
        const r = await run("kubectl-nftegress", args, undefined, pluginEnv());
        assert.equal(r.code, 1, r.stdout);
        assert.equal(r.stdout, "");
        assert.match(r.stderr, /^kubectl nftegress: --context "nope": no such context in kubeconfig \S+ \(contexts: envtest, dead\)\n$/);
      }
      const viaKubectl = await run(cluster.kubectlPath, ["nftegress", "top", "--context", "nope"], undefined, pluginEnv({ KUBECONFIG: kubeconfig }));
      assert.equal(viaKubectl.code, 1);
      assert.equal(viaKubectl.stderr.trim().split("\n").length, 1, viaKubectl.stderr);
      const bad = await run("kubectl-nftegress", ["apply", "-f", "x"], undefined, pluginEnv());
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^kubectl nftegress: unknown command "apply"/);
      const flag = await run("kubectl-nftegress", ["top", "--bogus"], undefined, pluginEnv());
      assert.equal(flag.code, 2);
      assert.match(flag.stderr, /^kubectl nftegress: Unknown option '--bogus'/);
    });
  });
});
