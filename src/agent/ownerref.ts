// --owner-daemonset NAMESPACE/NAME, parsed without the Kubernetes client (the standalone
// agent and the CLI must not load it).

export interface OwnerRef {
  namespace: string;
  name: string;
}

/** "namespace/name" → OwnerRef; null when malformed. */
export function parseOwnerRef(text: string): OwnerRef | null {
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(text);
  return m?.[1] && m[3] ? { namespace: m[1], name: m[3] } : null;
}
