/**
 * Writes each gateway's location into its twin tags (`tags.fieldlink.location`) when it
 * changed: in the background, at a bounded rate (IoT Hub throttles twin operations — 10/s per
 * S1 unit — and the fleet's other work shares that), retrying what the hub could not take.
 * Pending writes live in the locations store, so a restart resumes them.
 */
import type { Clock } from '../../../common/clock.js';
import { isFieldlinkError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { FleetHub, JsonObject } from '../fleet-hub.js';
import type { DeviceRow, LocationStore } from './location-store.js';

export interface LocationTagWriterOptions {
  store: LocationStore;
  hub: Pick<FleetHub, 'patchTags'>;
  clock: Clock;
  log: Logger;
  /** Twin writes per second at most (default 5). */
  perSecond?: number;
  /** Wait after a hub failure, doubling up to maxBackoffMs (defaults 2 s, 60 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
}

/** The tags patch for a device's effective location (the override first), with when it last changed. */
export function locationTagPatch(row: DeviceRow): JsonObject {
  const location = row.override ?? row.ipLocation;
  return { fieldlink: { location: location === null ? null : { ...location, updated: new Date(row.locatedAt ?? 0).toISOString() } } };
}

export class LocationTagWriter {
  private readonly stopping = new AbortController();
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** Writes done and failed since start, for logs and tests. */
  readonly counts = { written: 0, noDevice: 0, failures: 0 };

  constructor(private readonly o: LocationTagWriterOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** There is work: wake the loop if it waits. */
  kick(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake?.();
    await this.loop;
  }

  /** Writes everything pending now (demo start-up, tests); returns how many were written. */
  async flush(): Promise<number> {
    let written = 0;
    for (;;) {
      const rows = this.o.store.pendingTags(50);
      if (rows.length === 0) return written;
      for (const row of rows) if ((await this.write(row)) === 'written') written++;
    }
  }

  private async write(row: DeviceRow): Promise<'written' | 'no-device'> {
    try {
      await this.o.hub.patchTags(row.deviceId, locationTagPatch(row));
      this.o.store.tagSettled(row.deviceId, row.locatedAt, null);
      this.counts.written++;
      return 'written';
    } catch (err) {
      // Connection records can name devices this hub no longer (or never) had: nothing to tag.
      if (isFieldlinkError(err, 'DEVICE_NOT_FOUND')) {
        this.o.store.tagSettled(row.deviceId, row.locatedAt, 'no such device in IoT Hub');
        this.counts.noDevice++;
        return 'no-device';
      }
      throw err;
    }
  }

  private async idle(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      void this.o.clock.sleep(ms, this.stopping.signal).then(done, done);
    });
  }

  private async run(): Promise<void> {
    const gapMs = 1000 / (this.o.perSecond ?? 5);
    const base = this.o.backoffMs ?? 2000;
    let backoff = base;
    while (!this.stopping.signal.aborted) {
      const rows = this.o.store.pendingTags(20);
      if (rows.length === 0) {
        await this.idle(30_000);
        continue;
      }
      for (const row of rows) {
        if (this.stopping.signal.aborted) return;
        try {
          await this.write(row);
          backoff = base;
          // Not woken by kick(): the rate holds however often ingest signals work.
          await this.o.clock.sleep(gapMs, this.stopping.signal).catch(() => undefined);
        } catch (err) {
          this.counts.failures++;
          this.o.log.warn({ err, gateway: row.deviceId, retryInMs: backoff }, 'location tag not written; retrying');
          await this.idle(backoff);
          backoff = Math.min(backoff * 2, this.o.maxBackoffMs ?? 60_000);
          break;
        }
      }
    }
  }
}
