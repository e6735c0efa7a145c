/**
 * Messages between SqliteOutbox (event-loop thread) and its worker thread. Requests carry the
 * caller's monotonic time so every clock reading comes from the injected Clock; the worker never
 * reads a clock itself.
 */
import type { Sample } from '../../../sensors/contract/reading.js';
import type { BatchRecord, OutboxCounters } from '../ports/outbox.js';

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

/**
 * One group commit, serialised on the event-loop thread: one string and one typed array cross
 * to the worker instead of an array of objects (a structured clone of every sample, then a
 * JSON.stringify of each in the worker). Built by AppendGroupBuilder.
 */
export interface AppendGroup {
  /** Each sample's JSON (JSON.stringify, without `seq`), joined by '\n', which JSON.stringify never emits. */
  readonly json: string;
  /** The distinct sources of the group. */
  readonly sources: readonly string[];
  /** Three integers per row: index into `sources`, alarm (0 or 1), UTF-8 byte length of its JSON. */
  readonly meta: Int32Array;
}

/**
 * Collects samples for the next group commit. `add` serialises at once, so the group holds a
 * snapshot of what was appended (a later change to a caller's object is not stored) and a
 * sample that cannot be serialised fails its own `append`, not the whole group.
 */
export class AppendGroupBuilder {
  #json: string[] = [];
  #meta: number[] = [];
  #sources = new Map<string, number>();

  get rows(): number {
    return this.#json.length;
  }

  /** Throws (adding nothing) if a sample cannot be serialised. */
  add(samples: readonly Sample[]): void {
    const json: string[] = [];
    for (const sample of samples) {
      // A Sample has no `seq`; a caller passing a Reading gets it replaced, as before.
      const s = JSON.stringify(Object.hasOwn(sample, 'seq') ? { ...sample, seq: undefined } : sample);
      if (typeof s !== 'string' || typeof sample.source !== 'string') throw new TypeError('a sample must be a JSON-serialisable object with a source');
      json.push(s);
    }
    for (let i = 0; i < samples.length; i++) {
      const sample = samples[i] as Sample;
      const s = json[i] as string;
      let k = this.#sources.get(sample.source);
      if (k === undefined) {
        k = this.#sources.size;
        this.#sources.set(sample.source, k);
      }
      this.#json.push(s);
      this.#meta.push(k, sample.flags?.alarm === true ? 1 : 0, Buffer.byteLength(s));
    }
  }

  /** The group so far; the builder starts empty again. */
  take(): AppendGroup {
    const group: AppendGroup = { json: this.#json.join('\n'), sources: [...this.#sources.keys()], meta: Int32Array.from(this.#meta) };
    this.#json = [];
    this.#meta = [];
    this.#sources = new Map();
    return group;
  }
}

/**
 * The stored body of a group row, `json` being its sample's JSON at [start, end) of the group's
 * text: `seq` appended as the last key, exactly what JSON.stringify({ ...sample, seq }) gives.
 * The added text is ASCII, so the body's UTF-8 size is the JSON's plus (body.length - (end - start)).
 */
export function withSeq(text: string, start: number, end: number, seq: number): string {
  return end - start > 2 ? `${text.slice(start, end - 1)},"seq":${seq}}` : `{"seq":${seq}}`;
}

export type StoreRequest =
  | { readonly op: 'open'; readonly options: StoreOptions; readonly monoMs: number }
  | { readonly op: 'append'; readonly group: AppendGroup; readonly monoMs: number; readonly freeBytes: number | undefined }
  | { readonly op: 'peek'; readonly limit: number; readonly maxBytes: number | undefined; readonly afterId: number | undefined; readonly monoMs: number }
  | { readonly op: 'ack'; readonly ids: readonly number[]; readonly monoMs: number }
  | { readonly op: 'stats'; readonly monoMs: number }
  | { readonly op: 'recordBatch'; readonly batch: StoredBatch }
  | { readonly op: 'pendingBatches' }
  | { readonly op: 'rebaseUnsynced'; readonly bootId: string; readonly offsetMs: number }
  | { readonly op: 'setLimits'; readonly maxBytes: number; readonly minFreeBytes: number; readonly ttlMs: number }
  | { readonly op: 'close'; readonly monoMs: number };

/** What each request resolves with. */
export interface StoreResults {
  open: null;
  /** The seq assigned to each row, in order (the caller has the samples already); transferred. */
  append: Float64Array;
  /** JSON text of `[[id, reading], ...]`, oldest first (see SqliteOutboxStore.peek). */
  peek: string;
  ack: number;
  stats: StoreStats;
  recordBatch: null;
  pendingBatches: readonly StoredBatch[];
  /** How many rows changed. */
  rebaseUnsynced: number;
  setLimits: null;
  close: null;
}

export interface RequestEnvelope {
  readonly id: number;
  readonly request: StoreRequest;
}

export type ResponseEnvelope =
  | { readonly id: number; readonly ok: true; readonly result: StoreResults[StoreRequest['op']] }
  | { readonly id: number; readonly ok: false; readonly error: { readonly message: string; readonly sqliteCode?: string } };
