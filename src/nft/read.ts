// One read of our table per question: absent, dormant, or its terse listing (which carries the
// named counters too). It comes from `nft -j -t list ruleset inet`, a few milliseconds however large
// our sets are: nft 1.0.6 downloads every set element for any listing of a table, chain or
// counter (hundreds of milliseconds with 100k elements), but not for a terse ruleset listing.
import type { NftExecutor, NftJson } from "./executor.js";
import { NftUnreadableError } from "./errors.js";
import { parseTable, tableItems, type TableListing } from "./listing.js";
import { FAMILY, TABLE } from "./transaction.js";

export type TableState = { kind: "absent" } | { kind: "dormant" } | { kind: "present"; json: NftJson; listing: TableListing };

export async function readTable(nft: NftExecutor): Promise<TableState> {
  let json: NftJson | null;
  try {
    json = tableItems(await nft.listRuleset(), FAMILY, TABLE);
  } catch (e) {
    // nft 1.0.6 prints unreadable JSON for any table with flags (ours dormant, or another inet
    // table's): ask the text listing, then, if ours is fine, list ours alone (slow but rare).
    if (!(e instanceof NftUnreadableError)) throw e;
    const dormant = await nft.isDormant();
    if (dormant === null) return { kind: "absent" };
    if (dormant) return { kind: "dormant" };
    json = await nft.listTable(true);
    // The text listing just said ours is not dormant: no second look at its flags.
    return json ? { kind: "present", json, listing: parseTable(json) } : { kind: "absent" };
  }
  if (!json) return { kind: "absent" };
  const listing = parseTable(json);
  if (listing.flagged && (await nft.isDormant()) === true) return { kind: "dormant" };
  return { kind: "present", json, listing };
}
