/**
 * Time, injected. `now()` is wall time and may jump (NTP sync, a Pi booting in 1970);
 * `monotonicMs()` never goes backwards and is what timeouts, TTLs and backoff must use.
 */
export interface Clock {
  /** Wall-clock milliseconds since the epoch. */
  now(): number;
  /** Milliseconds from an arbitrary origin that only moves forward; for measuring intervals. */
  monotonicMs(): number;
  /** Resolve after `ms` of monotonic time; reject with `signal.reason` if aborted first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

// setTimeout fires immediately (with a warning) for delays beyond a signed 32-bit int.
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A negative or NaN delay is a bug in the caller's arithmetic, not a zero wait. */
/** Why a sleep must fail before it starts (a bad delay, or an already aborted signal), if it must. */
function refusal(ms: number, signal: AbortSignal | undefined): { reason: unknown } | undefined {
  if (Number.isNaN(ms) || ms < 0) return { reason: new RangeError(`delay must be non-negative, got ${ms}`) };
  if (signal?.aborted) return { reason: signal.reason };
  return undefined;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonicMs: () => performance.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const refused = refusal(ms, signal);
      if (refused) {
        reject(refused.reason);
        return;
      }
      const deadline = performance.now() + ms;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      // Long sleeps are chained in chunks because of the timer limit; Infinity sleeps until aborted.
      const arm = (): void => {
        const remaining = deadline - performance.now();
        if (remaining <= 0) {
          signal?.removeEventListener('abort', onAbort);
          resolve();
          return;
        }
        timer = setTimeout(arm, Math.min(Math.ceil(remaining), MAX_TIMER_MS));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      arm();
    });
  },
};

interface Sleeper {
  readonly due: number;
  readonly order: number;
  readonly wake: () => void;
}

/**
 * A clock that moves only when told to. Sleeps resolve during `advance()`, in due order, with
 * `now()`/`monotonicMs()` reading the sleeper's due time, and the code each wakes runs before
 * the next one wakes, so loops that sleep again are scheduled as they would be on real time.
 */
export class FakeClock implements Clock {
  #wall: number;
  #monotonic: number;
  #sleepers: Sleeper[] = [];
  #order = 0;

  constructor(opts: { wallMs?: number; monotonicMs?: number } = {}) {
    this.#wall = opts.wallMs ?? Date.UTC(2025, 0, 1);
    this.#monotonic = opts.monotonicMs ?? 0;
  }

  now(): number {
    return this.#wall;
  }

  monotonicMs(): number {
    return this.#monotonic;
  }

  /** Sleeps not yet resolved or aborted. */
  get pendingSleeps(): number {
    return this.#sleepers.length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const refused = refusal(ms, signal);
      if (refused) {
        reject(refused.reason);
        return;
      }
      // Already due: resolve now rather than wait for an advance that a test may never make.
      if (ms === 0) {
        resolve();
        return;
      }
      const onAbort = (): void => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal?.reason);
      };
      const sleeper: Sleeper = {
        due: this.#monotonic + ms,
        order: this.#order++,
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#sleepers.push(sleeper);
    });
  }

  /** Move both clocks forward by `ms`, waking every sleep that falls due on the way. */
  async advance(ms: number): Promise<void> {
    const refused = refusal(ms, undefined);
    if (refused) throw refused.reason;
    const target = this.#monotonic + ms;
    for (;;) {
      const next = this.#nextDue(target);
      if (next === undefined) break;
      this.#moveTo(next.due);
      this.#sleepers = this.#sleepers.filter((s) => s !== next);
      next.wake();
      // Let the woken code run (and perhaps sleep again) before looking for the next sleeper.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.#moveTo(target);
  }

  /** Jump the wall clock, as NTP does; monotonic time and pending sleeps are unaffected. */
  setWall(ms: number): void {
    this.#wall = ms;
  }

  #nextDue(limit: number): Sleeper | undefined {
    let best: Sleeper | undefined;
    for (const s of this.#sleepers) {
      if (s.due > limit) continue;
      if (best === undefined || s.due < best.due || (s.due === best.due && s.order < best.order)) best = s;
    }
    return best;
  }

  #moveTo(monotonic: number): void {
    if (monotonic <= this.#monotonic) return;
    this.#wall += monotonic - this.#monotonic;
    this.#monotonic = monotonic;
  }
}

/** Sleeps on `clock`; false when `signal` aborted the sleep (other errors are thrown). */
export async function sleepUnlessAborted(clock: Clock, ms: number, signal: AbortSignal): Promise<boolean> {
  try {
    await clock.sleep(ms, signal);
    return true;
  } catch (e) {
    if (signal.aborted) return false;
    throw e;
  }
}
