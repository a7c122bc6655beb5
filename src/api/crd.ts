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
    apiVersion: { type: "string" },
    kind: { type: "string" },
    metadata: { type: "object" },
  };
  for (const key of ["spec", "status"]) {
    const s = shape[key];
    if (s) properties[key] = schemaOf(s);
  }
  const required: Json[] = "spec" in shape && !(shape["spec"] instanceof z.ZodOptional) ? ["spec"] : [];
  const version: JsonObject = {
    name: VERSION,
    served: true,
    storage: true,
    schema: { openAPIV3Schema: { type: "object", properties, ...(required.length ? { required } : {}) } },
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
        plural: "egresspolicies",
        singular: "egresspolicy",
        shortNames: ["egp"],
        schema: EgressPolicy,
        statusSubresource: true,
        columns: [
          { name: "Mode", type: "string", jsonPath: ".spec.mode" },
          { name: "Selected", type: "integer", jsonPath: ".status.nodes.selected" },
          { name: "Applied", type: "integer", jsonPath: ".status.nodes.applied" },
          { name: "Denied", type: "integer", jsonPath: ".status.denied.packets" },
          { name: "Ready", type: "string", jsonPath: ".status.conditions[?(@.type==\"Ready\")].status" },
          { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
        ],
      }),
    },
    {
      file: "nftegress.io_egressaddresssets.yaml",
      object: crd({
        kind: "EgressAddressSet",
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
