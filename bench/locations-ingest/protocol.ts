/** What run.ts asks a round child (round.ts) to do, and what the child answers. */

export type RoundKind = 'lookups' | 'ingest';

export interface RoundJob {
  readonly kind: RoundKind;
  /** lookups: the addresses file (one masked address a line); ingest: the `{"records":[...]}` file. */
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
  /** Records (ingest) or addresses (lookups) processed. */
  readonly items: number;
  /** Timed part: the lookups loop, or the ingest plus the tag flush. */
  readonly seconds: number;
  /** ingest only: the ingest itself, without the tag flush. */
  readonly ingestSeconds: number;
  readonly flushSeconds: number;
  /** RSS just before the timed part (geolocator loaded, inputs ready, after a GC), bytes. */
  readonly rssBefore: number;
  /** Highest RSS sampled during the timed part, bytes. */
  readonly rssPeakSampled: number;
  /** process.resourceUsage().maxRSS at the end (the process's high-water mark, setup included), bytes. */
  readonly maxRss: number;
  /** Heap used at the sampled peak, bytes. */
  readonly heapPeakSampled: number;
  readonly samples: number;
  /** lookups: how many answers were 'located' (keeps the loop honest). */
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
