// Temporary policy directories for tests.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PASSWD_LINE } from "./netns.js";

export interface TempDir {
  dir: string;
  passwd: string;
  /** A --state-dir for the CLI and agents, removed with the rest. */
  state: string;
  write(name: string, text: string): string;
  remove(): void;
}

export function tempDir(): TempDir {
  const dir = mkdtempSync(join(tmpdir(), "nftegress-test-"));
  const passwd = join(dir, "passwd");
  writeFileSync(passwd, PASSWD_LINE);
  const policies = join(dir, "policies");
  mkdirSync(policies);
  return {
    dir: policies,
    passwd,
    state: join(dir, "state"),
    write(name: string, text: string) {
      const p = join(policies, name);
      writeFileSync(p, text);
      return p;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
