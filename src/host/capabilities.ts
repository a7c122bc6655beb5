// Whether this process may change the ruleset: nft needs CAP_NET_ADMIN in the effective set.
// A container started without it (securityContext.capabilities.add lacks NET_ADMIN, or a
// non-root uid) would otherwise fail at every apply with nft's bare "Operation not permitted".
import { readFileSync } from "node:fs";

export const CAP_NET_ADMIN = 12;

/** The effective capability mask from /proc/PID/status text; null when absent. */
export function effectiveCaps(status: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m?.[1] ? BigInt(`0x${m[1]}`) : null;
}

export function hasCap(mask: bigint, cap: number): boolean {
  return ((mask >> BigInt(cap)) & 1n) === 1n;
}

/** An error line when the process lacks CAP_NET_ADMIN; null when it has it (or cannot tell). */
export function netAdminMissing(statusFile = "/proc/self/status"): string | null {
  let mask: bigint | null;
  try {
    mask = effectiveCaps(readFileSync(statusFile, "utf8"));
  } catch {
    return null;
  }
  if (mask === null || hasCap(mask, CAP_NET_ADMIN)) return null;
  return `missing capability CAP_NET_ADMIN (effective set 0x${mask.toString(16)}, uid ${process.getuid?.() ?? "?"}): nft cannot change the ruleset; run as uid 0 with CAP_NET_ADMIN (in a pod: securityContext.runAsUser 0 and capabilities.add [NET_ADMIN])`;
}
