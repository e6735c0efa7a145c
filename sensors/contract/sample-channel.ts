import type { Sample } from './reading.js';

/**
 * The queue between a driver's event handlers (serial data, D-Bus signals, Firmata messages),
 * which push, and its `samples()` async iterable, which pulls. Unbounded on purpose: a reading
 * a device delivered is not dropped here; the outbox bounds what is kept.
 */
export class SampleChannel {
  #items: Sample[] = [];
  #head = 0;
  #wake: (() => void) | undefined;
  #ended = false;
  #error: unknown;

  /** Ignored once ended: a late event after the driver stopped has nowhere to go. */
  push(s: Sample): void {
    if (this.#ended) return;
    this.#items.push(s);
    this.#notify();
  }

  /** No more samples; `drain` ends after the queued ones, throwing `error` if given. */
  end(error?: unknown): void {
    this.#ended = true;
    this.#error = error;
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async *drain(): AsyncGenerator<Sample> {
    for (;;) {
      if (this.#head < this.#items.length) {
        const item = this.#items[this.#head++] as Sample;
        // Compact now and then instead of shift() per item (O(n) under a notification storm).
        if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
          this.#items = this.#items.slice(this.#head);
          this.#head = 0;
        }
        yield item;
        continue;
      }
      if (this.#ended) {
        if (this.#error !== undefined) throw this.#error;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

/**
 * The body of a driver's `samples()`: runs `produce` with a channel and a stop signal (aborted
 * by `signal`, and when the consumer leaves the loop early: break, throw) and yields what it
 * pushes. The stream ends when `produce` settles — with its error if it rejected — and the
 * generator returns only after `produce` has finished.
 */
export async function* produceSamples(signal: AbortSignal, produce: (stop: AbortSignal, channel: SampleChannel) => Promise<void>): AsyncGenerator<Sample> {
  const channel = new SampleChannel();
  const stop = new AbortController();
  const onAbort = (): void => stop.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  const done = produce(stop.signal, channel).then(
    () => channel.end(),
    (e: unknown) => channel.end(e),
  );
  try {
    yield* channel.drain();
  } finally {
    signal.removeEventListener('abort', onAbort);
    stop.abort();
    await done;
  }
}
