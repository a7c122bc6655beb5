// The agents own their table: they wait for its lock as long as it takes (see src/host/lock.ts),
// saying once who holds it.
import type { Logger } from "pino";
import type { TableLock } from "../host/lock.js";

export function waitForTableLock(lock: TableLock, log: Logger): Promise<void> {
  return lock.acquire({ timeoutMs: null, onBusy: (holder) => log.warn({ holder, lock: lock.path }, "table locked by another process, waiting for it (not ready until then)") });
}
