/**
 * Whether the wall clock can be believed (design §4 "Clock"). A Raspberry Pi has no real-time
 * clock and may boot in 1970: until a time source says the clock is synchronised, readings carry
 * boot-relative time with the boot id, and the uplink stays closed so no SAS token is minted
 * from a wrong clock.
 *
 * Contract: `trusted` starts false (an `AssumedClockTrust` is the deliberate exception) and
 * changes only when the source answers; `onChange` handlers run once per change of `trusted`,
 * never for a repeated answer; an unreachable source counts as "not synchronised" and is retried
 * by the implementation, never surfaced as a rejection of `start()`.
 */
export interface ClockTrust {
  /** Current belief; false until the source has said the clock is synchronised. */
  readonly trusted: boolean;
  /** Starts watching; resolves after the first answer. A source that cannot be reached resolves too (untrusted) and keeps retrying; it never rejects for that. */
  start(): Promise<void>;
  /** Called on every change of `trusted`. Returns an unsubscribe function. */
  onChange(handler: (trusted: boolean) => void): () => void;
  close(): Promise<void>;
}

/** The boot the gateway runs in and a monotonic clock counting from it. */
export interface BootClock {
  readonly bootId: string;
  /** Milliseconds since boot, monotonic (wall-clock jumps do not move it). */
  sinceBootMs(): number;
}

/**
 * A clock trust set by hand: for tests, and for wiring where something else decides. `set()`
 * calls the handlers synchronously, in subscription order, only when the value changes.
 */
export class ManualClockTrust implements ClockTrust {
  #trusted: boolean;
  // Wrapped in objects so the same function subscribed twice is two subscriptions.
  #handlers = new Set<{ readonly fn: (trusted: boolean) => void }>();

  constructor(initial = false) {
    this.#trusted = initial;
  }

  get trusted(): boolean {
    return this.#trusted;
  }

  async start(): Promise<void> {}

  set(trusted: boolean): void {
    if (trusted === this.#trusted) return;
    this.#trusted = trusted;
    // A handler that unsubscribes (itself or another) during the loop must not skip anyone.
    for (const handler of [...this.#handlers]) handler.fn(trusted);
  }

  onChange(handler: (trusted: boolean) => void): () => void {
    const entry = { fn: handler };
    this.#handlers.add(entry);
    return () => {
      this.#handlers.delete(entry);
    };
  }

  async close(): Promise<void> {
    this.#handlers.clear();
  }
}

/**
 * Always trusted, never changes: for development machines and `npm start`, whose clocks are kept
 * by the host. Never use it on a device without a real-time clock.
 */
export class AssumedClockTrust implements ClockTrust {
  readonly trusted = true;

  async start(): Promise<void> {}

  onChange(_handler: (trusted: boolean) => void): () => void {
    return () => undefined;
  }

  async close(): Promise<void> {}
}
