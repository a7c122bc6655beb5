// Reads what the kernel counted: per-policy denied/would-deny counters, top denied
// destinations and denials by uid from the dynamic sets. Lists only our small dynamic sets.
import type { NftExecutor } from "../nft/executor.js";
import { parseCounters, parseSetElements, type CounterValue } from "../nft/listing.js";
import { readTable } from "../nft/read.js";
import { names } from "../policy/names.js";

export interface TopDestination {
  address: string;
  port?: number;
  protocol: string;
  packets: number;
}

export interface UidDenials {
  uid: number;
  user?: string;
  packets: number;
}

export interface AppliedPolicy {
  name: string;
  id: string;
  generation: number;
  revision: string;
  mode: string;
  priority: number;
  denied: CounterValue;
  wouldDeny: CounterValue;
  topDeniedDestinations: TopDestination[];
  deniedByUser: UidDenials[];
}

export interface KernelStatus {
  present: boolean;
  /** The table is dormant: nothing of it is enforced (break-glass). */
  dormant?: boolean;
  policies: AppliedPolicy[];
}

// The jump rule's comment (compile.ts policyComment): bounded fields only, never a name.
const COMMENT = /^policy gen:(\d+) rev:([0-9a-f]+) mode:(Audit|Enforce) prio:(\d+) h:/;
export const TOP_K = 10;

/**
 * What the kernel enforces and counted, policy by policy in the table's order. A policy is
 * named from `policyNames` (id -> name, src/host/policynames.ts); one whose name is not known
 * there is shown by its id.
 */
export interface StatusOptions {
  /** The last reading: a policy whose counters did not move keeps its top-K lists unread. */
  previous?: ReadonlyMap<string, AppliedPolicy>;
  topK?: number;
  /** Policy id -> name (src/host/policynames.ts). */
  policyNames?: ReadonlyMap<string, string>;
}

export async function readStatus(nft: NftExecutor, userNames: ReadonlyMap<number, string>, opts: StatusOptions = {}): Promise<KernelStatus> {
  const { previous, topK = TOP_K, policyNames = new Map<string, string>() } = opts;
  const table = await readTable(nft);
  if (table.kind === "absent") return { present: false, policies: [] };
  if (table.kind === "dormant") return { present: true, dormant: true, policies: [] };
  const { listing } = table;
  const counters = parseCounters(table.json);
  const zero = { packets: 0, bytes: 0 };
  const policies: AppliedPolicy[] = [];
  for (const j of listing.jumps) {
    const m = COMMENT.exec(j.comment);
    if (!m) continue;
    const id = j.target;
    const denied = counters.get(names.deniedCounter(id)) ?? zero;
    const wouldDeny = counters.get(names.wouldCounter(id)) ?? zero;
    const p: AppliedPolicy = {
      name: policyNames.get(id) ?? id,
      id,
      generation: Number(m[1]),
      revision: m[2] ?? "",
      mode: m[3] ?? "",
      priority: Number(m[4]),
      denied,
      wouldDeny,
      topDeniedDestinations: [],
      deniedByUser: [],
    };
    const prev = previous?.get(id);
    const unchanged = prev && prev.mode === p.mode && prev.denied.packets === denied.packets && prev.wouldDeny.packets === wouldDeny.packets;
    if (unchanged && prev) {
      p.topDeniedDestinations = prev.topDeniedDestinations;
      p.deniedByUser = prev.deniedByUser;
    } else if (denied.packets + wouldDeny.packets > 0) {
      await readDynamic(nft, p, userNames, topK);
    }
    policies.push(p);
  }
  return { present: true, policies };
}

async function readDynamic(nft: NftExecutor, p: AppliedPolicy, userNames: ReadonlyMap<number, string>, topK: number): Promise<void> {
  // The sets of the policy's current mode: an Enforce policy's count denials, an Audit one's would-denies.
  const mode = p.mode === "Audit" ? "Audit" : "Enforce";
  const dests: TopDestination[] = [];
  for (const family of [4, 6] as const) {
    for (const withPorts of [true, false]) {
      for (const e of parseSetElements(await nft.listSet(names.dst(p.id, family, withPorts, mode)))) {
        const [address, protocol, port] = e.key;
        dests.push({
          address: String(address),
          protocol: String(protocol),
          ...(withPorts && typeof port === "number" ? { port } : {}),
          packets: e.packets,
        });
      }
    }
  }
  p.topDeniedDestinations = dests.sort((a, b) => b.packets - a.packets).slice(0, topK);
  const uids = parseSetElements(await nft.listSet(names.uid(p.id, mode))).map((e) => {
    const uid = Number(e.key[0]);
    const user = userNames.get(uid);
    return { uid, ...(user ? { user } : {}), packets: e.packets };
  });
  p.deniedByUser = uids.sort((a, b) => b.packets - a.packets).slice(0, topK);
}
