// Reads user and group names from passwd/group files (the host's, mounted read-only in the
// DaemonSet). Only this and the other host/ readers touch the node's files.
import { readFileSync } from "node:fs";
import type { Identities } from "../policy/compile.js";

/** name -> the number in field `field` (2: the uid or gid; 3 in passwd: the primary gid). */
function parseIdFile(text: string, field = 2): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const f = line.split(":");
    const name = f[0];
    const id = f[field] === "" ? NaN : Number(f[field]);
    if (name && Number.isInteger(id) && !out.has(name)) out.set(name, id);
  }
  return out;
}

function readOrEmpty(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function readIdentities(passwdPath = "/etc/passwd", groupPath = "/etc/group"): Identities {
  return { users: parseIdFile(readOrEmpty(passwdPath)), groups: parseIdFile(readOrEmpty(groupPath)) };
}

/** user name -> primary gid, from a passwd file. */
export function primaryGroups(passwdPath = "/etc/passwd"): Map<string, number> {
  return parseIdFile(readOrEmpty(passwdPath), 3);
}

/** uid -> first user name, for status output. */
export function userNames(ids: Identities): Map<number, string> {
  const out = new Map<number, string>();
  for (const [name, uid] of ids.users) if (!out.has(uid)) out.set(uid, name);
  return out;
}
