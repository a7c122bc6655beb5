// Small state that must survive agent restarts but not reboots (conntrack does not survive a
// reboot either): what the applied ruleset allows, for revoking flows when that shrinks.
// Kept in a tmpfs directory (/run/nftegress), so the agent never lists large sets to learn it.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatCidr, parseCidr, type Cidr } from "../net/cidr.js";

export interface AllowedStore {
  load(): Cidr[] | null;
  save(cidrs: readonly Cidr[]): void;
}

export class FileAllowedStore implements AllowedStore {
  private readonly file: string;

  constructor(stateDir: string, netns: string | undefined) {
    this.file = join(stateDir, netns ? `netns-${netns}` : "host", "allowed.txt");
  }

  load(): Cidr[] | null {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return null;
    }
    return text.split("\n").flatMap((l) => {
      const r = parseCidr(l.trim());
      return r.ok ? [r.cidr] : [];
    });
  }

  save(cidrs: readonly Cidr[]): void {
    const dir = join(this.file, "..");
    mkdirSync(dir, { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, cidrs.map(formatCidr).join("\n"));
    renameSync(tmp, this.file);
  }
}

/** For tests and one-shot tools that keep nothing. */
export class MemoryAllowedStore implements AllowedStore {
  private cidrs: Cidr[] | null = null;
  load(): Cidr[] | null {
    return this.cidrs;
  }
  save(cidrs: readonly Cidr[]): void {
    this.cidrs = [...cidrs];
  }
}
