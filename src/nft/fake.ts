// A recording fake of the executor, for unit tests only: it records every script and can be
// told to fail. It does not interpret nft; real behaviour is tested against real nft.
import type { NftExecutor, NftJson } from "./executor.js";
import { NftTransactionError, NftUnreadableError } from "./errors.js";

export class RecordingNftExecutor implements NftExecutor {
  readonly applied: string[] = [];
  readonly checked: string[] = [];
  failNext: string | null = null;
  table: NftJson | null = null;
  sets = new Map<string, NftJson>();

  /** Called after each recorded apply, e.g. to make the table appear. */
  onApply: (() => void) | null = null;

  async apply(script: string): Promise<void> {
    if (this.failNext !== null) {
      const msg = this.failNext;
      this.failNext = null;
      throw new NftTransactionError(`nft rejected the transaction: ${msg}`, msg, 1);
    }
    this.applied.push(script);
    this.onApply?.();
  }

  async check(script: string): Promise<void> {
    this.checked.push(script);
  }

  async listTable(): Promise<NftJson | null> {
    // Like nft 1.0.6, which prints invalid JSON for a dormant table.
    if (this.dormant === true) throw new NftUnreadableError("unreadable JSON output", "", 0);
    // dormant false (not null) means the table exists, empty unless `table` says otherwise.
    return this.table ?? (this.dormant === false ? { nftables: [] } : null);
  }

  async listRuleset(): Promise<NftJson> {
    // Like nft 1.0.6, which prints invalid JSON for a dormant table.
    if (this.dormant === true) throw new NftUnreadableError("unreadable JSON output", "", 0);
    if (this.table) return this.table;
    return { nftables: this.dormant === false ? [{ table: { family: "inet", name: "nftegress" } }] : [] };
  }

  async listSet(name: string): Promise<NftJson | null> {
    return this.sets.get(name) ?? null;
  }

  async listSets(): Promise<NftJson | null> {
    this.setListings++;
    return { nftables: [...this.sets.values()].flatMap((j) => j.nftables.filter((i) => "set" in i)) };
  }

  /** How many times listSets ran. */
  setListings = 0;

  /** null: no table; false: the table exists; true: it exists and is dormant. */
  dormant: boolean | null = null;

  async isDormant(): Promise<boolean | null> {
    return this.dormant;
  }
}
