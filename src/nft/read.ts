// One read of our table per question: absent, dormant, or its terse listing (which carries the
// named counters too). nft 1.0.6 downloads every set element for any table listing, terse or
// not, so with large sets each read costs hundreds of milliseconds: read once, reuse.
import type { NftExecutor, NftJson } from "./executor.js";
import { NftUnreadableError } from "./errors.js";
import { parseTable, type TableListing } from "./listing.js";

export type TableState = { kind: "absent" } | { kind: "dormant" } | { kind: "present"; json: NftJson; listing: TableListing };

export async function readTable(nft: NftExecutor): Promise<TableState> {
  try {
    const json = await nft.listTable(true);
    if (!json) return { kind: "absent" };
    const listing = parseTable(json);
    // nft 1.0.6 prints a table's flags as garbage (or as invalid JSON): ask the text listing.
    if (listing.flagged && (await nft.isDormant()) === true) return { kind: "dormant" };
    return { kind: "present", json, listing };
  } catch (e) {
    // Table flags can make nft 1.0.6 print unreadable JSON; ask the text listing.
    if (e instanceof NftUnreadableError && (await nft.isDormant()) === true) return { kind: "dormant" };
    throw e;
  }
}
