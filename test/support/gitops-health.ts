// What GitOps tools make of objects, judged by their own code through hack/gitops-health (built
// on first use by hack/gitops-health.sh into ~/.cache/nftegress):
// - Argo CD: a health Lua script run in gopher-lua with exactly the libraries Argo CD opens for
//   argocd-cm health scripts (no string, math or os library), Unknown with the error as the
//   message when the script fails, as Argo CD shows it;
// - Flux: sigs.k8s.io/cli-utils kstatus status.Compute (InProgress, Current, Failed, ...).
import { join } from "node:path";
import { z } from "zod";
import { ROOT, must, sh } from "./exec.js";

export const LUA_HEALTH = join(ROOT, "docs", "argocd-health.lua");

const Verdict = z.strictObject({ status: z.string(), message: z.string() });
export type Verdict = z.infer<typeof Verdict>;

const Judged = z.union([
  z.strictObject({ argo: Verdict.optional(), flux: Verdict }),
  z.strictObject({ error: z.string() }),
]);
export type Judged = z.infer<typeof Judged>;

let binary: string | undefined;

/** The gitops-health program, built when missing (hack/gitops-health.sh prints its path last). */
export function gitopsHealthBinary(): string {
  if (binary === undefined) {
    const path = must(join(ROOT, "hack", "gitops-health.sh"), []).trim().split("\n").pop();
    if (!path) throw new Error("hack/gitops-health.sh printed nothing");
    binary = path;
  }
  return binary;
}

/** Argo CD's (with the script) and Flux's verdicts on each object, in order. */
export function judge(objects: unknown[], script: string | undefined = LUA_HEALTH): Judged[] {
  const r = sh(gitopsHealthBinary(), script === undefined ? [] : ["--argo-script", script], JSON.stringify(objects));
  if (r.code !== 0) throw new Error(`gitops-health failed (${r.code}): ${r.stderr.trim()}`);
  const out = z.array(Judged).parse(JSON.parse(r.stdout));
  if (out.length !== objects.length) throw new Error(`gitops-health judged ${out.length} of ${objects.length} objects`);
  return out;
}

/** Both verdicts on one Kubernetes object; throws when it is not one. */
export function verdicts(obj: unknown, script: string = LUA_HEALTH): { argo: Verdict; flux: Verdict } {
  const [j] = judge([obj], script);
  if (j === undefined || "error" in j) throw new Error(`not a Kubernetes object: ${j?.error ?? "no answer"}`);
  if (j.argo === undefined) throw new Error("gitops-health gave no Argo CD verdict");
  return { argo: j.argo, flux: j.flux };
}

/** Flux's kstatus verdict on each object. */
export function fluxStatus(objects: unknown[]): Verdict[] {
  return judge(objects, undefined).map((j) => {
    if ("error" in j) throw new Error(`not a Kubernetes object: ${j.error}`);
    return j.flux;
  });
}
