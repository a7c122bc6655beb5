// Runs one job at a time; kicks while it runs coalesce into one more run (level-triggered).
export class Kicker {
  private dirty = false;
  private running: Promise<void> | null = null;

  constructor(
    private readonly job: () => Promise<void>,
    private readonly onError: (e: unknown) => void = () => undefined,
  ) {}

  get busy(): boolean {
    return this.running !== null;
  }

  kick(): void {
    this.dirty = true;
    if (this.running) return;
    this.running = (async () => {
      while (this.dirty) {
        this.dirty = false;
        await this.job().catch(this.onError);
      }
      this.running = null;
    })();
  }

  async idle(): Promise<void> {
    await this.running;
  }
}
