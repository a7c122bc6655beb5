// Gives memory back to the system. V8 sizes its heap for throughput by the machine's memory
// (on a 23 GiB host one 100k-destination apply grows the young generation to 2 x 64 MiB) and
// keeps what it grew, and an idle process seldom collects: an agent holding 20 MiB of live
// heap idled at 176 MiB RSS, and the few hundred KiB each drift check allocates pile up until
// the next full collection. So when the resident size has grown by GROWTH since the last trim
// and no work came for QUIET (checked after work, and once a minute), one memory-reducing full
// collection (50-150 ms) returns the rest: the same agent then idles near 90 MiB.
// (`--optimize-for-size` keeps the heap small too, but made incremental applies 2x slower.)
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Collect = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;

const QUIET_MS = 5000;
const IDLE_CHECK_MS = 60_000;
const GROWTH_BYTES = 4 * 2 ** 20;

/** V8's gc(), which Node exposes only with --expose-gc: set the flag, then fetch it. */
function collector(): Collect {
  setFlagsFromString("--expose-gc");
  return runInNewContext("gc") as Collect;
}

export class HeapTrimmer {
  private quiet: NodeJS.Timeout | undefined;
  private readonly idle: NodeJS.Timeout;
  private collect: Collect | null = null;
  private trimmedAt = process.memoryUsage.rss();
  private lastWork = 0;

  /** busy: whether work is under way (a trim never interrupts it). */
  constructor(private readonly busy: () => boolean) {
    this.idle = setInterval(() => Date.now() - this.lastWork >= QUIET_MS && this.trim(), IDLE_CHECK_MS);
    this.idle.unref();
  }

  /** Call after each piece of work: trims once no more work came for a while. */
  workDone(): void {
    this.lastWork = Date.now();
    clearTimeout(this.quiet);
    this.quiet = setTimeout(() => this.trim(), QUIET_MS);
    this.quiet.unref();
  }

  stop(): void {
    clearTimeout(this.quiet);
    clearInterval(this.idle);
  }

  private trim(): void {
    if (this.busy() || process.memoryUsage.rss() - this.trimmedAt < GROWTH_BYTES) return;
    this.collect ??= collector();
    this.collect({ type: "major", execution: "sync", flavor: "last-resort" });
    this.trimmedAt = process.memoryUsage.rss();
  }
}
