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

/** Which of the given cgroup v2 paths exist now. */
export function existingCgroups(paths: Iterable<string>, root = cgroup2Root()): Set<string> {
  const out = new Set<string>();
  if (!root) return out;
  for (const p of paths) {
    const clean = p.replace(/^\/+/, "");
    if (existsSync(join(root, clean))) out.add(clean);
  }
  return out;
}
