import type { Logger } from '../../common/log.js';
import type { CommandService } from './commands.js';
import type { FeedbackSubscription, FleetHub } from './fleet-hub.js';

export interface FeedbackWorkerOptions {
  hub: FleetHub;
  commands: CommandService;
  log: Logger;
  /** First retry after a lost subscription; doubles up to maxRetryMs, with jitter. */
  minRetryMs?: number;
  maxRetryMs?: number;
  /** How often pending commands past expiry + grace are marked expired. */
  sweepEveryMs?: number;
}

/**
 * The one reader of IoT Hub's feedback stream (the hub has one feedback queue per hub, so a
 * second companion would steal records: see docs/cloud.md "Running more than one"). Settles
 * commands from it, resubscribes with backoff when the link drops, and sweeps commands whose
 * feedback never came.
 */
export class FeedbackWorker {
  private sub: FeedbackSubscription | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = true;
  private connecting = false;

  constructor(private readonly o: FeedbackWorkerOptions) {}

  get connected(): boolean {
    return this.sub !== undefined;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
    this.sweepTimer = setInterval(() => {
      try {
        this.o.commands.expireOverdue();
      } catch (err) {
        this.o.log.error({ err }, 'command expiry sweep failed');
      }
    }, this.o.sweepEveryMs ?? 60_000);
    this.sweepTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.sweepTimer);
    const sub = this.sub;
    this.sub = undefined;
    await sub?.close();
  }

  private async connect(): Promise<void> {
    if (this.stopped || this.connecting || this.sub) return;
    this.connecting = true;
    try {
      const sub = await this.o.hub.subscribeFeedback({
        onRecords: (records) => {
          this.o.commands.applyFeedback(records);
        },
        onError: (err) => {
          if (this.sub !== sub) return;
          this.sub = undefined;
          this.o.log.warn({ reason: err.message }, 'feedback receiver lost; resubscribing');
          this.retryLater();
        },
      });
      if (this.stopped) {
        await sub.close();
        return;
      }
      this.sub = sub;
      if (this.failures > 0) this.o.log.info({ after: this.failures }, 'feedback receiver back');
      this.failures = 0;
    } catch (err) {
      this.o.log.warn({ reason: err instanceof Error ? err.message : String(err), failures: this.failures + 1 }, 'feedback receiver not available; retrying');
      this.retryLater();
    } finally {
      this.connecting = false;
    }
  }

  private retryLater(): void {
    if (this.stopped) return;
    this.failures++;
    const min = this.o.minRetryMs ?? 1_000;
    const max = this.o.maxRetryMs ?? 60_000;
    const base = Math.min(max, min * 2 ** Math.min(this.failures - 1, 16));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
    this.retryTimer.unref();
  }
}
