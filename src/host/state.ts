// Small state that must survive agent restarts but not reboots (conntrack does not survive a
// reboot either): what the applied ruleset allows, for revoking flows when that shrinks.
// Kept in a tmpfs directory (/run/nftegress), so the agent never lists large sets to learn it.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatPrefixes, parsePrefixList, type PrefixList } from "../net/prefixlist.js";

export interface AllowedStore {
  load(): PrefixList[] | null;
  save(lists: readonly PrefixList[]): void;
}

export class FileAllowedStore implements AllowedStore {
  private readonly file: string;

  constructor(stateDir: string, netns: string | undefined) {
    this.file = join(stateDir, netns ? `netns-${netns}` : "host", "allowed.txt");
  }

  load(): PrefixList[] | null {
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return null;
    }
    return [parsePrefixList(text.split("\n").map((l) => l.trim()))];
  }

  save(lists: readonly PrefixList[]): void {
    const dir = join(this.file, "..");
    mkdirSync(dir, { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, lists.flatMap(formatPrefixes).join("\n"));
    renameSync(tmp, this.file);
  }
}

/** For tests and one-shot tools that keep nothing. */
export class MemoryAllowedStore implements AllowedStore {
  private lists: PrefixList[] | null = null;
  load(): PrefixList[] | null {
    return this.lists;
  }
  save(lists: readonly PrefixList[]): void {
    this.lists = [...lists];
  }
}
