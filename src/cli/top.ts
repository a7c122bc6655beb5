// nftegress top: the cluster-wide view, from the policies' statuses.
import { z } from "zod";
import { EgressPolicy } from "../api/policy.js";
import { kubeError } from "../kube/client.js";
import { InputError } from "../source/documents.js";
import { UsageError, parse } from "./args.js";
import { KUBE_HELP, KUBE_OPTIONS, kubeClient } from "./kubeconfig.js";
import { table } from "./table.js";

export const TOP_HELP = `Usage: nftegress top [--kubeconfig FILE] [--context NAME] [--output json]

Lists every EgressPolicy with its mode, node counts, denied and would-deny packets and its
most denied destination, most denied first, from the statuses the controller maintains.

  -o, --output FORMAT  text (default) or json
${KUBE_HELP}`;

export async function topCommand(argv: string[], out: (l: string) => void): Promise<number> {
  const { values: v } = parse(argv, { ...KUBE_OPTIONS, output: { type: "string", short: "o", default: "text" } }, TOP_HELP);
  if (v.help) return (out(TOP_HELP), 0);
  if (v.output !== "text" && v.output !== "json") throw new UsageError(`--output must be text or json, not "${v.output}"`);
  const client = kubeClient(v);
  let raw: unknown;
  try {
    raw = await client.custom.listClusterCustomObject({ group: "nftegress.io", version: "v1alpha1", plural: "egresspolicies" }, client.options());
  } catch (e) {
    throw new InputError(`listing EgressPolicies from ${client.server}: ${kubeError(e).message}`);
  }
  const items = z.object({ items: z.array(z.unknown()) }).parse(raw).items.flatMap((i) => {
    const p = EgressPolicy.safeParse(i);
    return p.success ? [p.data] : [];
  });
  const rows = items
    .map((p) => {
      const s = p.status;
      const top = s?.topDeniedDestinations?.[0];
      const ready = s?.conditions?.find((c) => c.type === "Ready");
      return {
        policy: p.metadata.name,
        mode: p.spec.mode,
        selected: s?.nodes?.selected ?? 0,
        applied: s?.nodes?.applied ?? 0,
        failed: s?.nodes?.failed ?? 0,
        denied: s?.denied?.packets ?? 0,
        wouldDeny: s?.wouldDeny?.packets ?? 0,
        topDestination: top ? `${top.address}${top.port !== undefined ? `:${top.port}` : ""}/${top.protocol} (${top.packets})` : "",
        ready: ready ? `${ready.status}${ready.reason ? ` ${ready.reason}` : ""}` : "Unknown",
      };
    })
    .sort((a, b) => b.denied + b.wouldDeny - (a.denied + a.wouldDeny) || a.policy.localeCompare(b.policy));
  if (v.output === "json") return (out(JSON.stringify(rows, null, 2)), 0);
  if (!rows.length) return (out("no EgressPolicies"), 0);
  for (const l of table([
    ["POLICY", "MODE", "SELECTED", "APPLIED", "FAILED", "DENIED", "WOULD-DENY", "TOP-DESTINATION", "READY"],
    ...rows.map((r) => [r.policy, r.mode, String(r.selected), String(r.applied), String(r.failed), String(r.denied), String(r.wouldDeny), r.topDestination || "-", r.ready]),
  ]))
    out(l);
  return 0;
}
