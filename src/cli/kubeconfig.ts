// The kubeconfig flags of the cluster commands, read like kubectl reads them: --kubeconfig
// (else $KUBECONFIG, else ~/.kube/config, else in-cluster), --context (else the current
// context) and -n/--namespace (accepted; nftegress objects are cluster-scoped).
import { KubeClient, k8s } from "../kube/client.js";
import { InputError } from "../source/documents.js";

export const KUBE_OPTIONS = {
  kubeconfig: { type: "string" },
  context: { type: "string" },
  namespace: { type: "string", short: "n" },
} as const;

export const KUBE_HELP = `  --kubeconfig FILE    kubeconfig (default: $KUBECONFIG, ~/.kube/config, then in-cluster)
  --context NAME       kubeconfig context to use (default: its current context)
  -n, --namespace NS   accepted like kubectl's; nftegress objects are cluster-scoped`;

/** A client for the chosen kubeconfig and context; a context it lacks is one error line. */
export function kubeClient(v: { kubeconfig?: string | undefined; context?: string | undefined }): KubeClient {
  const kc = new k8s.KubeConfig();
  const where = v.kubeconfig ?? (process.env["KUBECONFIG"] || "~/.kube/config");
  try {
    if (v.kubeconfig) kc.loadFromFile(v.kubeconfig);
    else kc.loadFromDefault();
  } catch (e) {
    throw new InputError(`kubeconfig ${where}: ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
  }
  if (v.context !== undefined) {
    if (!kc.getContextObject(v.context)) {
      const known = kc.getContexts().map((c) => c.name).join(", ") || "none";
      throw new InputError(`--context "${v.context.slice(0, 80)}": no such context in kubeconfig ${where} (contexts: ${known})`);
    }
    kc.setCurrentContext(v.context);
  }
  return new KubeClient(kc);
}
