// The names of the policies in our table, by policy id. The table itself carries only the id
// (the policy's chain) and bounded fields in the jump rule's comment: a Kubernetes name of up
// to 253 characters does not fit an nft comment (128 bytes), and a name is never parsed back
// from free text. Kept in the state directory (<state-dir>/{host|netns-NAME}/policies.json) by
// every apply, so `nftegress status` and a restarted agent name what the kernel holds. The
// names of the apply before the last are kept too: a failed apply leaves that state enforced.
import { readFileSync } from "node:fs";
import { replaceFile } from "./statefile.js";
import { join } from "node:path";
import { z } from "zod";

const Names = z.record(z.string(), z.string());
const SavedNames = z.strictObject({ current: Names, previous: Names });

export interface PolicyNameStore {
  /** Every name known by id (empty when none was saved or the file is unreadable). */
  load(): Map<string, string>;
  /** The names of the ruleset about to be applied; the earlier current ones become previous. */
  record(names: Readonly<Record<string, string>>): void;
}

function parse(text: string | null): z.infer<typeof SavedNames> | null {
  if (text === null) return null;
  try {
    const r = SavedNames.safeParse(JSON.parse(text));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

function merged(saved: z.infer<typeof SavedNames> | null): Map<string, string> {
  return new Map([...Object.entries(saved?.previous ?? {}), ...Object.entries(saved?.current ?? {})]);
}

function next(saved: z.infer<typeof SavedNames> | null, names: Readonly<Record<string, string>>): string {
  const previous = Object.fromEntries(Object.entries(saved?.current ?? {}).filter(([id]) => !(id in names)));
  return JSON.stringify({ current: { ...names }, previous });
}

export class FilePolicyNames implements PolicyNameStore {
  private readonly file: string;

  constructor(stateDir: string, netns: string | undefined) {
    this.file = join(stateDir, netns ? `netns-${netns}` : "host", "policies.json");
  }

  private read(): string | null {
    try {
      return readFileSync(this.file, "utf8");
    } catch {
      return null;
    }
  }

  load(): Map<string, string> {
    return merged(parse(this.read()));
  }

  record(names: Readonly<Record<string, string>>): void {
    const text = next(parse(this.read()), names);
    replaceFile(this.file, text);
  }
}

/** Without a state directory (and in tests): the same, in memory. */
export class MemoryPolicyNames implements PolicyNameStore {
  text: string | null = null;
  load(): Map<string, string> {
    return merged(parse(this.text));
  }
  record(names: Readonly<Record<string, string>>): void {
    this.text = next(parse(this.text), names);
  }
}
