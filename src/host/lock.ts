// One writer per table: `nftegress apply` and `cleanup` hold the table's lock for their whole
// read-plan-apply, the agents for their lifetime (they own the table). Two applies planned from
// their own earlier reads would otherwise merge their states.
//
// The lock is flock(2) on <state-dir>/<host | netns-NAME>/lock, taken through flock(1) (Node has
// no flock): it belongs to our open file, so the kernel drops it when we exit or are killed, and
// there is no stale lock to detect or break. Every nft transaction we start inherits the file
// (src/nft/executor.ts), so a transaction still committing after we died keeps the table locked
// until it is done. The holder writes "pid N: COMMAND" into the file for the waiters' messages.
import { closeSync, constants, ftruncateSync, mkdirSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { flockFile } from "../nft/executor.js";
import { FAMILY, TABLE } from "../nft/transaction.js";

export interface AcquireOptions {
  /** How long to wait for a busy lock; null: as long as it takes. */
  timeoutMs: number | null;
  /** Called once, before waiting, when another process holds the lock. */
  onBusy?: (holder: string) => void;
}

export interface TableLock {
  /** Takes the lock, waiting as told; throws TableLockedError when it stays busy. */
  acquire(opts: AcquireOptions): Promise<void>;
  release(): void;
  /** The open lock file while held (for the nft processes that must hold it too), else null. */
  heldFd(): number | null;
  /** The lock file's path, for messages. */
  readonly path: string;
}

export class TableLockedError extends Error {
  override name = "TableLockedError";
  constructor(
    message: string,
    readonly holder: string,
  ) {
    super(message);
  }
}

/** Takes flock(2) on an open file: true when taken, false when still busy after waitSec. */
export type Flock = (fd: number, waitSec: number | null) => Promise<boolean>;

export function lockPath(stateDir: string, netns: string | undefined): string {
  return join(stateDir, netns ? `netns-${netns}` : "host", "lock");
}

export class FileTableLock implements TableLock {
  readonly path: string;
  private fd: number | null = null;

  constructor(
    stateDir: string,
    private readonly netns: string | undefined,
    /** What the holder writes into the lock file; the default names this process. */
    private readonly holderText = `pid ${process.pid}: nftegress ${process.argv.slice(2).join(" ")}`.slice(0, 300),
    private readonly flock: Flock = flockFile,
  ) {
    this.path = lockPath(stateDir, netns);
  }

  heldFd(): number | null {
    return this.fd;
  }

  /** What the lock file says about its holder (written by the holder once it has the lock). */
  holder(): string {
    let text = "";
    try {
      text = readFileSync(this.path, "utf8").split("\n")[0]?.trim() ?? "";
    } catch {
      // gone or unreadable: say so below
    }
    return text || "another process (it has not written its pid yet)";
  }

  async acquire(opts: AcquireOptions): Promise<void> {
    if (this.fd !== null) return;
    mkdirSync(join(this.path, ".."), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      if (!(await this.flock(fd, 0))) {
        const holder = this.holder();
        opts.onBusy?.(holder);
        const waitSec = opts.timeoutMs === null ? null : opts.timeoutMs / 1000;
        if (waitSec === 0 || !(await this.flock(fd, waitSec))) {
          const now = this.holder();
          const where = this.netns ? ` in netns ${this.netns}` : "";
          throw new TableLockedError(`table ${FAMILY} ${TABLE}${where} is locked by ${now} (${this.path}); gave up after ${waitSec ?? 0} s (--lock-timeout)`, now);
        }
      }
      ftruncateSync(fd, 0);
      writeSync(fd, `${this.holderText.replace(/\n/g, " ")}\n`, 0);
      this.fd = fd;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  release(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

/** Parses --lock-timeout SEC (a number of seconds, 0: do not wait). */
export function lockTimeoutMs(text: string): number | null {
  const n = Number(text);
  return text.trim() !== "" && Number.isFinite(n) && n >= 0 ? n * 1000 : null;
}
