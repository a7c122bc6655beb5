// Builds the CustomResourceDefinitions from the zod schemas (pure). The CRD YAML under crds/
// is generated from this; a test fails when the committed files differ.
import { z } from "zod";
import { GROUP, VERSION } from "./common.js";
import { EgressAddressSet } from "./addressset.js";
import { EgressPolicy } from "./policy.js";
import { NodeEgressReport } from "./report.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Rewrites JSON Schema into a Kubernetes structural schema. */
function structural(node: Json): Json {
  if (Array.isArray(node)) return node.map(structural);
  if (!isObject(node)) return node;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$schema" || k === "id") continue;
    if (k === "additionalProperties" && v === false) continue;
    if (k === "properties" && isObject(v)) {
      out[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, structural(pv)]));
      continue;
    }
    out[k] = structural(v);
  }
  return out;
}

/** zod's default bounds of .int() (safe integers): not constraints worth stating. */
const SAFE = Number.MAX_SAFE_INTEGER;

function text(v: Json | undefined): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** The constraints a schema node states, as sentences for its description. */
function constraints(node: JsonObject): string[] {
  const out: string[] = [];
  const { minimum: min, maximum: max, minLength, maxLength, minItems, maxItems } = node;
  const lo = typeof min === "number" && min > -SAFE ? min : undefined;
  const hi = typeof max === "number" && max < SAFE ? max : undefined;
  if (lo !== undefined && hi !== undefined) out.push(`Range: ${lo}-${hi}.`);
  else if (lo !== undefined) out.push(`At least ${lo}.`);
  else if (hi !== undefined) out.push(`At most ${hi}.`);
  if (typeof minLength === "number" && typeof maxLength === "number") out.push(`Length: ${minLength}-${maxLength} characters.`);
  else if (typeof maxLength === "number") out.push(`At most ${maxLength} characters.`);
  else if (typeof minLength === "number") out.push(`At least ${minLength} characters.`);
  if (typeof node["pattern"] === "string") out.push(`Pattern: /${node["pattern"]}/.`);
  if (Array.isArray(node["enum"])) out.push(`One of: ${node["enum"].map(text).join(", ")}.`);
  if (typeof minItems === "number") out.push(`At least ${minItems} entries.`);
  if (typeof maxItems === "number") out.push(`At most ${maxItems} entries.`);
  const keys = node["x-kubernetes-list-map-keys"];
  if (Array.isArray(keys)) out.push(`Entries are unique by ${keys.map(text).join(", ")}.`);
  const rules = node["x-kubernetes-validations"];
  if (Array.isArray(rules)) for (const r of rules) if (isObject(r) && typeof r["message"] === "string") out.push(`Rule: ${r["message"]}.`);
  const items = node["items"];
  if (isObject(items)) {
    const each = constraints(items);
    if (each.length) out.push(`Each entry: ${each.join(" ")}`);
  }
  const values = node["additionalProperties"];
  if (isObject(values)) {
    const each = constraints(values);
    if (each.length) out.push(`Each value: ${each.join(" ")}`);
  }
  return out;
}

/**
 * Adds the default and the constraints of every field to its description (the zod
 * .describe() text), so `kubectl explain` shows them; throws for a field without one.
 */
function documented(node: JsonObject, path: string): JsonObject {
  const out: JsonObject = { ...node };
  const props = node["properties"];
  if (isObject(props)) {
    out["properties"] = Object.fromEntries(
      Object.entries(props).map(([k, v]) => {
        if (!isObject(v)) throw new Error(`${path}.${k}: not a schema`);
        return [k, documentedField(v, `${path}.${k}`)];
      }),
    );
  }
  const items = node["items"];
  if (isObject(items)) out["items"] = documented(items, `${path}[]`);
  const extra = node["additionalProperties"];
  if (isObject(extra)) out["additionalProperties"] = documented(extra, `${path}{}`);
  return out;
}

function documentedField(node: JsonObject, path: string): JsonObject {
  const desc = node["description"];
  if (typeof desc !== "string" || desc.trim() === "") throw new Error(`${path}: no description (give its zod schema a .describe())`);
  const extra = [...("default" in node ? [`Default: ${text(node["default"])}.`] : []), ...constraints(node)];
  return { ...documented(node, path), description: [desc, ...extra].join(" ") };
}

function schemaOf(s: z.ZodType): JsonObject {
  const js = z.toJSONSchema(s, { io: "input", unrepresentable: "any", target: "openapi-3.0" }) as Json;
  const out = structural(js);
  if (!isObject(out)) throw new Error("schema is not an object");
  return out;
}

interface PrinterColumn {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
  description?: string;
}

interface CrdInput {
  kind: string;
  description: string;
  plural: string;
  singular: string;
  shortNames: string[];
  schema: z.ZodObject;
  statusSubresource: boolean;
  columns: PrinterColumn[];
}

function crd(input: CrdInput): JsonObject {
  const shape = input.schema.shape as Record<string, z.ZodType>;
  const properties: JsonObject = {
    // The API server documents these three itself (and refuses more than a type on metadata).
    apiVersion: { type: "string" },
    kind: { type: "string" },
    metadata: { type: "object" },
  };
  for (const key of ["spec", "status"]) {
    const s = shape[key];
    if (s) properties[key] = documentedField(schemaOf(s), `${input.kind}.${key}`);
  }
  const required: Json[] = "spec" in shape && !(shape["spec"] instanceof z.ZodOptional) ? ["spec"] : [];
  const root: JsonObject = { type: "object", description: input.description, properties, ...(required.length ? { required } : {}) };
  const version: JsonObject = {
    name: VERSION,
    served: true,
    storage: true,
    schema: { openAPIV3Schema: root },
    additionalPrinterColumns: input.columns.map((c) => ({ ...c }) as JsonObject),
  };
  if (input.statusSubresource) version["subresources"] = { status: {} };
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${input.plural}.${GROUP}` },
    spec: {
      group: GROUP,
      scope: "Cluster",
      names: {
        kind: input.kind,
        listKind: `${input.kind}List`,
        plural: input.plural,
        singular: input.singular,
        shortNames: input.shortNames,
        categories: ["nftegress"],
      },
      versions: [version],
    },
  };
}

export function customResourceDefinitions(): { file: string; object: JsonObject }[] {
  return [
    {
      file: "nftegress.io_egresspolicies.yaml",
      object: crd({
        kind: "EgressPolicy",
        description: "Host egress policy for the nodes it selects, enforced by the nftegress agent with nftables.",
        plural: "egresspolicies",
        singular: "egresspolicy",
        shortNames: ["egp"],
        schema: EgressPolicy,
        statusSubresource: true,
        // Status (the Ready reason) shows at a glance a policy Ready with NoNodesSelected, one
        // that enforces nowhere; priority 1 columns appear with -o wide.
        columns: [
          { name: "Mode", type: "string", jsonPath: ".spec.mode", description: "Audit or Enforce." },
          { name: "Selected", type: "integer", jsonPath: ".status.nodes.selected", description: "Nodes the nodeSelector matches." },
          { name: "Applied", type: "integer", jsonPath: ".status.nodes.applied", description: "Selected nodes that applied the current generation." },
          { name: "Denied", type: "integer", jsonPath: ".status.denied.packets", description: "Packets denied, summed over the nodes." },
          { name: "Ready", type: "string", jsonPath: ".status.conditions[?(@.type==\"Ready\")].status", description: "The Ready condition's status." },
          { name: "Status", type: "string", jsonPath: ".status.conditions[?(@.type==\"Ready\")].reason", description: "The Ready condition's reason: Applied, NoNodesSelected, Progressing, NodesSuspended, or why it is stalled." },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          { name: "Priority", type: "integer", jsonPath: ".spec.priority", priority: 1, description: "Lower runs first." },
          { name: "Default", type: "string", jsonPath: ".spec.defaultAction", priority: 1, description: "defaultAction: for traffic no rule matched." },
          { name: "Failed", type: "integer", jsonPath: ".status.nodes.failed", priority: 1, description: "Selected nodes that failed the current generation." },
          { name: "Pending", type: "integer", jsonPath: ".status.nodes.pending", priority: 1, description: "Selected nodes that have not applied the current generation yet." },
          { name: "Would-Deny", type: "integer", jsonPath: ".status.wouldDeny.packets", priority: 1, description: "Packets that would have been denied (Audit), summed over the nodes." },
        ],
      }),
    },
    {
      file: "nftegress.io_egressaddresssets.yaml",
      object: crd({
        kind: "EgressAddressSet",
        description: "Named destinations that EgressPolicy rules reference in to.addressSets.",
        plural: "egressaddresssets",
        singular: "egressaddressset",
        shortNames: ["egas"],
        schema: EgressAddressSet,
        statusSubresource: false,
        columns: [
          { name: "Set", type: "string", jsonPath: ".metadata.labels.nftegress\\.io/set" },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
        ],
      }),
    },
    {
      file: "nftegress.io_nodeegressreports.yaml",
      object: crd({
        kind: "NodeEgressReport",
        description: "One node's report, written by its agent (name: the node's name): what it enforces and what it counted.",
        plural: "nodeegressreports",
        singular: "nodeegressreport",
        shortNames: ["ner"],
        schema: NodeEgressReport,
        statusSubresource: false,
        columns: [
          { name: "Hash", type: "string", jsonPath: ".status.rulesetHash" },
          { name: "Last-Apply", type: "string", jsonPath: ".status.lastApplyTime" },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
        ],
      }),
    },
  ];
}
