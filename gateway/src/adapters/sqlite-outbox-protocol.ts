/**
 * Messages between SqliteOutbox (event-loop thread) and its worker thread. Requests carry the
 * caller's monotonic time so every clock reading comes from the injected Clock; the worker never
 * reads a clock itself.
 */
import type { Sample } from '../../../sensors/contract/reading.js';
import type { BatchRecord, OutboxCounters, OutboxRow } from '../ports/outbox.js';

export interface StoreOptions {
  readonly path: string;
  readonly maxBytes: number;
  readonly minFreeBytes: number;
  readonly ttlMs: number;
  readonly synchronous: 'FULL' | 'NORMAL';
  readonly journalSizeLimitBytes: number;
  readonly walAutocheckpointPages: number;
  readonly vacuumThresholdPages: number;
}

export interface StoreStats {
  readonly depth: number;
  readonly bytes: number;
  readonly oldestAgeMs: number | undefined;
  readonly commits: number;
  readonly counters: OutboxCounters;
}

/** A BatchRecord as stored: the plan as JSON text (serialised on the event-loop thread). */
export interface StoredBatch extends Omit<BatchRecord, 'plan'> {
  readonly plan: string;
}

export type StoreRequest =
  | { readonly op: 'open'; readonly options: StoreOptions; readonly monoMs: number }
  | { readonly op: 'append'; readonly samples: readonly Sample[]; readonly monoMs: number; readonly freeBytes: number | undefined }
  | { readonly op: 'peek'; readonly limit: number; readonly maxBytes: number | undefined; readonly monoMs: number }
  | { readonly op: 'ack'; readonly ids: readonly number[]; readonly monoMs: number }
  | { readonly op: 'stats'; readonly monoMs: number }
  | { readonly op: 'recordBatch'; readonly batch: StoredBatch }
  | { readonly op: 'pendingBatches' }
  | { readonly op: 'close'; readonly monoMs: number };

/** What each request resolves with. */
export interface StoreResults {
  open: null;
  /** The seq assigned to each sample, in order (the caller has the samples already). */
  append: readonly number[];
  peek: readonly OutboxRow[];
  ack: number;
  stats: StoreStats;
  recordBatch: null;
  pendingBatches: readonly StoredBatch[];
  close: null;
}

export interface RequestEnvelope {
  readonly id: number;
  readonly request: StoreRequest;
}

export type ResponseEnvelope =
  | { readonly id: number; readonly ok: true; readonly result: StoreResults[StoreRequest['op']] }
  | { readonly id: number; readonly ok: false; readonly error: { readonly message: string; readonly sqliteCode?: string } };
