import { readFileSync } from "node:fs";
import { parseAddress } from "../net/cidr.js";

/** Name servers from resolv.conf, for the DNS failsafe. */
export function readResolvers(path = "/etc/resolv.conf"): string[] {
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    const addr = m?.[1]?.replace(/%.*$/, "");
    if (addr && parseAddress(addr)) out.push(addr);
  }
  return [...new Set(out)];
}
