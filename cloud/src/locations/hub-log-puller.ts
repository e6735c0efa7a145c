/**
 * The default setup's connection-log source: the companion pulls the local hub's Connections
 * log (`/_local/logs/connections`) every few seconds and feeds it to the same ingest as
 * `POST /v1/ingest/connection-logs`. Where it got to is kept in the locations store, so a
 * restart continues (and ingest is idempotent, so a re-read costs nothing but time).
 */
import type { Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import type { ConnectionLogPage, ConnectionLogQuery } from '../../hub/connection-log.js';
import type { ConnectionLogIngest, IngestResult } from './ingest.js';
import type { LocationStore } from './location-store.js';

/** Time (ms) of the newest record read: the next read starts there (records at that instant again; ingest drops the repeats). */
const CURSOR_KEY = 'localHubConnectionLogTime';
const PAGE = 1000;

export interface HubLogPullerOptions {
  read: (q: ConnectionLogQuery) => Promise<ConnectionLogPage>;
  ingest: ConnectionLogIngest;
  store: LocationStore;
  clock: Clock;
  log: Logger;
  /** Between polls (default 5 s); a failed read waits twice as long, up to a minute. */
  everyMs?: number;
}

export class HubLogPuller {
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly o: HubLogPullerOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  /** Reads everything new now; returns what the ingest made of it. */
  async pullOnce(): Promise<Pick<IngestResult, 'received' | 'accepted' | 'rejected'>> {
    const total = { received: 0, accepted: 0, rejected: 0 };
    const sinceMs = Number(this.o.store.meta(CURSOR_KEY) ?? 0);
    let afterSeq: number | undefined;
    for (;;) {
      const page = await this.o.read({ sinceMs, limit: PAGE, ...(afterSeq === undefined ? {} : { afterSeq }) });
      if (page.records.length > 0) {
        const result = await this.o.ingest.ingest(page.records.map((value, index) => ({ index, value })));
        total.received += result.received;
        total.accepted += result.accepted;
        total.rejected += result.rejected;
        if (result.rejected > 0) this.o.log.warn({ rejections: result.rejections.slice(0, 5) }, 'local hub connection records rejected');
      }
      const newest = page.records.reduce((max, r) => Math.max(max, Date.parse(r.time) || 0), 0);
      if (newest > Number(this.o.store.meta(CURSOR_KEY) ?? 0)) this.o.store.setMeta(CURSOR_KEY, String(newest));
      if (page.continuation === undefined) return total;
      afterSeq = page.continuation;
    }
  }

  private async run(): Promise<void> {
    const every = this.o.everyMs ?? 5000;
    let wait = every;
    while (!this.stopping.signal.aborted) {
      try {
        const r = await this.pullOnce();
        if (r.accepted > 0) this.o.log.info(r, 'local hub connection log pulled');
        wait = every;
      } catch (err) {
        this.o.log.warn({ err, retryInMs: wait * 2 }, 'local hub connection log not read');
        wait = Math.min(wait * 2, 60_000);
      }
      await this.o.clock.sleep(wait, this.stopping.signal).catch(() => undefined);
    }
  }
}
