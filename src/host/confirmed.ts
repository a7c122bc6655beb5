// The last confirmed ruleset's structure (chains, rules, set declarations, counter names;
// no set elements), kept across agent restarts in the state directory (/run/nftegress), so
// that a restarted agent can restore what the kernel held when it started if its first change
// fails commit-confirm. nft 1.0.6 cannot print every rule back in a form it accepts (for
// instance `ct original proto-dst { 0x1bb [invalid type] }`), so the rules' text comes from
// here, checked against the kernel's listing before it is trusted (src/agent/seed.ts); the
// elements and counter values are read from the kernel.
import { readFileSync } from "node:fs";
import { replaceFile } from "./statefile.js";
import { join } from "node:path";
import { z } from "zod";
import type { Ruleset } from "../nft/ruleset.js";

const SavedRuleset = z.strictObject({
  comment: z.string(),
  chains: z.array(
    z.strictObject({
      name: z.string(),
      base: z.strictObject({ type: z.literal("filter"), hook: z.literal("output"), priority: z.literal("filter"), policy: z.literal("accept") }).optional(),
      rules: z.array(z.strictObject({ expr: z.string(), comment: z.string() })),
    }),
  ),
  sets: z.array(
    z.strictObject({
      name: z.string(),
      keyType: z.string(),
      keyOf: z.boolean().optional(),
      dynamic: z.boolean(),
      flags: z.array(z.string()).optional(),
      timeout: z.string().optional(),
      size: z.number().int().positive().optional(),
      counter: z.boolean().optional(),
    }),
  ),
  counters: z.array(z.string()),
  acceptedFlows: z.string().optional(),
  recheckMark: z.strictObject({ mask: z.number().int().positive(), epoch: z.number().int().positive() }).optional(),
});

export interface RulesetStore {
  /** The saved structure, every set with no elements; null when none or unreadable. */
  load(): Ruleset | null;
  save(r: Ruleset): void;
}

function skeleton(r: Ruleset): z.infer<typeof SavedRuleset> {
  return {
    comment: r.comment,
    chains: r.chains.map((c) => ({ name: c.name, ...(c.base ? { base: c.base } : {}), rules: c.rules.map((x) => ({ expr: x.expr, comment: x.comment })) })),
    sets: r.sets.map(({ elements: _, ...decl }) => decl),
    counters: [...r.counters],
    ...(r.acceptedFlows ? { acceptedFlows: r.acceptedFlows } : {}),
    ...(r.recheckMark ? { recheckMark: { ...r.recheckMark } } : {}),
  };
}

function parse(text: string): Ruleset | null {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  const r = SavedRuleset.safeParse(raw);
  if (!r.success) return null;
  return {
    comment: r.data.comment,
    chains: r.data.chains.map((c) => ({ name: c.name, ...(c.base ? { base: c.base } : {}), rules: c.rules })),
    sets: r.data.sets.map((s) => ({ ...s, elements: [] })),
    counters: r.data.counters,
    ...(r.data.acceptedFlows ? { acceptedFlows: r.data.acceptedFlows } : {}),
    ...(r.data.recheckMark ? { recheckMark: r.data.recheckMark } : {}),
  };
}

export class FileRulesetStore implements RulesetStore {
  private readonly file: string;

  constructor(stateDir: string, netns: string | undefined) {
    this.file = join(stateDir, netns ? `netns-${netns}` : "host", "confirmed.json");
  }

  load(): Ruleset | null {
    try {
      return parse(readFileSync(this.file, "utf8"));
    } catch {
      return null;
    }
  }

  save(r: Ruleset): void {
    replaceFile(this.file, JSON.stringify(skeleton(r)));
  }
}

/** For tests: what a file would hold, through the same schema. */
export class MemoryRulesetStore implements RulesetStore {
  text: string | null = null;
  load(): Ruleset | null {
    return this.text === null ? null : parse(this.text);
  }
  save(r: Ruleset): void {
    this.text = JSON.stringify(skeleton(r));
  }
}
