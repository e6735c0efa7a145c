/** What run.ts asks a round child (round.ts) to do, and what the child answers. */

/**
 * lookups: geolocator.locate() of every record's address (its per-/24 answer cache on: the
 *          issue's "lookups alone", the headline ratio's denominator);
 * uncached: one DB-IP database lookup per record (maxmind's Reader, no cache at all);
 * parse:   the parse floor, readResourceLogRecords + JSON.parse(record.properties), nothing else;
 * ingest:  the measured ingest (plus the tag flush).
 */
export type RoundKind = 'lookups' | 'uncached' | 'parse' | 'ingest';

export const ROUND_KINDS: readonly RoundKind[] = ['lookups', 'uncached', 'parse', 'ingest'];

export interface RoundJob {
  readonly kind: RoundKind;
  /** lookups, uncached: the addresses file (one masked address a line); parse, ingest: the `{"records":[...]}` file. */
  readonly input: string;
  /** ingest: the device ids the stand-in hub knows, one a line. */
  readonly devicesFile: string;
  /** ingest: a fresh, empty directory for the locations store. */
  readonly storeDir: string;
  /** ingest: write a V8 CPU profile of the timed part here. */
  readonly profileFile?: string;
  /** RSS sampling period during the timed part. */
  readonly sampleMs: number;
}

export interface RoundResult {
  readonly type: 'result';
  readonly kind: RoundKind;
  /** Records (ingest, parse) or addresses (lookups, uncached) processed. */
  readonly items: number;
  /** Timed part: the lookups loop, the parse loop, or the ingest plus the tag flush. */
  readonly seconds: number;
  /** ingest only: the ingest itself, without the tag flush. */
  readonly ingestSeconds: number;
  readonly flushSeconds: number;
  /** RSS just before the timed part (geolocator or database loaded, inputs ready, after a GC), bytes. */
  readonly rssBefore: number;
  /** Highest RSS sampled during the timed part, bytes. */
  readonly rssPeakSampled: number;
  /** process.resourceUsage().maxRSS at the end (the process's high-water mark, setup included), bytes. */
  readonly maxRss: number;
  /** Heap used at the sampled peak, bytes. */
  readonly heapPeakSampled: number;
  readonly samples: number;
  /** lookups: answers 'located'; uncached: lookups that found a record with a country; parse: records whose properties hold a maskedIpAddress (keeps the loop honest). */
  readonly located: number;
  /** ingest: the ingest result's counts, and what the store and the stand-in hub hold after. */
  readonly ingest?: {
    readonly received: number;
    readonly accepted: number;
    readonly duplicates: number;
    readonly skipped: number;
    readonly rejected: number;
    readonly failedConnects: number;
    readonly devicesUpdated: number;
    readonly locationsChanged: number;
    readonly eventsStored: number;
    readonly devicesStored: number;
    readonly tagsWritten: number;
    readonly tagsNoDevice: number;
    readonly storeBytes: number;
  };
}

export interface RoundFailed {
  readonly type: 'failed';
  readonly message: string;
}
