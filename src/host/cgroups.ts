import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Mount point of the cgroup v2 hierarchy (pure v2 or the "unified" part of a hybrid setup). */
export function cgroup2Root(mounts = "/proc/self/mounts"): string | null {
  try {
    for (const line of readFileSync(mounts, "utf8").split("\n")) {
      const f = line.split(" ");
      if (f[2] === "cgroup2" && f[1]) return f[1];
    }
  } catch {
    return null;
  }
  return null;
}

/** nft resolves `socket cgroupv2` paths below this directory (fixed in nft 1.0.6). */
export const NFT_CGROUP_BASE = "/sys/fs/cgroup";

/**
 * Which of the given cgroup v2 paths exist now, mapped to the path nft must be given: on a
 * hybrid host the v2 hierarchy is mounted at /sys/fs/cgroup/unified, so "a/b" becomes
 * "unified/a/b" (the rule's level still counts from the v2 root).
 */
export function existingCgroups(paths: Iterable<string>, root = cgroup2Root()): Map<string, string> {
  const out = new Map<string, string>();
  if (!root || !(root === NFT_CGROUP_BASE || root.startsWith(`${NFT_CGROUP_BASE}/`))) return out;
  const prefix = root.slice(NFT_CGROUP_BASE.length).replace(/^\/+/, "");
  for (const p of paths) {
    const clean = p.replace(/^\/+/, "");
    if (existsSync(join(root, clean))) out.set(clean, prefix ? `${prefix}/${clean}` : clean);
  }
  return out;
}
