/**
 * The uplink port (design §4): the gateway's one connection to IoT Hub, as small promises with
 * our own deadlines and classified errors. The adapter (adapters/amqp-uplink.ts) keeps the SDK's
 * own retries off; whoever uses this port decides when to retry, from `UplinkError.kind`.
 *
 * - `open` connects; after a failed operation that tore the connection down (`timeout`,
 *   `unreachable`) or a `disconnect`, `isOpen` is false and the caller opens again.
 * - `send` resolves only once IoT Hub accepted the message; a rejection means it was *not*
 *   sent as far as the caller can tell (a timeout may still have been accepted: downstream
 *   deduplicates on `(source, seq)`).
 * - C2D messages and desired-property patches arrive through the `on*` callbacks while open.
 *   Patches sent while the uplink was closed are not replayed: call `getTwin` after each open.
 */
import { FieldlinkError, type ErrorCode } from '../../../common/errors.js';

/** A device-to-cloud message as the packer builds it. */
export interface OutgoingMessage {
  readonly messageId: string;
  readonly body: Buffer;
  readonly contentType?: string;
  readonly contentEncoding?: string;
  /** Application properties (IoT Hub routing keys); all strings. */
  readonly properties?: Readonly<Record<string, string>>;
}

/** A cloud-to-device message; settle it exactly once. */
export interface IncomingCommand {
  readonly messageId: string | undefined;
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly properties: Readonly<Record<string, string>>;
  /** Done with it: IoT Hub removes it (Success feedback). */
  complete(): Promise<void>;
  /** Invalid: IoT Hub drops it without redelivery (Rejected feedback). */
  reject(): Promise<void>;
  /** Not now: IoT Hub redelivers it (until its max delivery count). */
  abandon(): Promise<void>;
}

export type TwinSection = Record<string, unknown>;

export interface TwinDocument {
  /** Desired properties including `$version`. */
  readonly desired: TwinSection;
  readonly reported: TwinSection;
}

/**
 * Why an uplink operation failed, and so what to do:
 * - throttled: over a rate limit; keep the data, back off with jitter.
 * - quota: daily quota used up; keep the data, wait until `retryAt` (next 00:00 UTC).
 * - auth: credentials refused (wrong/rotated key, clock off); report, retry slowly.
 * - tooLarge: the message is over the hub's cap; resending it unchanged fails again.
 * - unreachable: no connection (refused, dropped, not open); reopen with backoff.
 * - timeout: our deadline passed; the connection was torn down; reopen with backoff.
 * - other: anything else.
 */
export type UplinkErrorKind = 'throttled' | 'quota' | 'auth' | 'tooLarge' | 'unreachable' | 'timeout' | 'other';

const codeOf: Record<UplinkErrorKind, ErrorCode> = {
  throttled: 'HUB_THROTTLED',
  quota: 'HUB_QUOTA_EXCEEDED',
  auth: 'HUB_AUTH_FAILED',
  tooLarge: 'HUB_MESSAGE_TOO_LARGE',
  unreachable: 'HUB_UNREACHABLE',
  timeout: 'TIMEOUT',
  other: 'HUB_REQUEST_FAILED',
};

export class UplinkError extends FieldlinkError {
  readonly kind: UplinkErrorKind;
  /** For `quota`: wall-clock ms (the uplink's clock) when the quota resets. */
  readonly retryAt: number | undefined;

  constructor(kind: UplinkErrorKind, opts: { message?: string; cause?: unknown; retryAt?: number; details?: Record<string, unknown> } = {}) {
    super(codeOf[kind], {
      ...(opts.message === undefined ? {} : { message: opts.message }),
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
      details: { kind, ...(opts.retryAt === undefined ? {} : { retryAt: new Date(opts.retryAt).toISOString() }), ...opts.details },
    });
    this.name = 'UplinkError';
    this.kind = kind;
    this.retryAt = opts.retryAt;
  }
}

export function isUplinkError(e: unknown, kind?: UplinkErrorKind): e is UplinkError {
  return e instanceof UplinkError && (kind === undefined || e.kind === kind);
}

export interface Uplink {
  /** True between a successful `open` and a `close`, disconnect or torn-down operation. */
  readonly isOpen: boolean;
  /** Connects (within the adapter's deadline); rejects with an UplinkError. Idempotent when open. */
  open(signal?: AbortSignal): Promise<void>;
  /** Resolves when IoT Hub accepted the message; rejects with an UplinkError. Several may be in flight. */
  send(message: OutgoingMessage): Promise<void>;
  /** The whole twin, fresh from the hub. */
  getTwin(): Promise<TwinDocument>;
  /** Merges `patch` into the reported properties (null deletes); resolves when the hub stored it. */
  reportProperties(patch: TwinSection): Promise<void>;
  /** Disconnects; pending operations reject. Safe to call when closed. */
  close(): Promise<void>;
  /** Each returns an unsubscribe function. */
  onCommand(handler: (command: IncomingCommand) => void): () => void;
  /**
   * Desired-property patches (with `$version`) pushed while open. Right after an open the whole
   * desired section may arrive once as if it were a patch: apply idempotently by `$version`.
   */
  onDesiredPatch(handler: (patch: TwinSection) => void): () => void;
  /** The connection was lost (not on `close`); `isOpen` is already false. */
  onDisconnect(handler: (error: UplinkError) => void): () => void;
}

/** Next 00:00 UTC strictly after `nowMs` (when IoT Hub's daily quota resets). */
export function nextUtcMidnight(nowMs: number): number {
  const d = new Date(nowMs);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
}
