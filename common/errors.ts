/**
 * The one registry of Fieldlink error codes. Every code is documented in docs/errors.md, and
 * test/common/errors.test.ts keeps the two in step, so a code shown to a user can always be
 * looked up. `retryable` says whether trying the same thing again later can succeed without
 * someone changing something first.
 */
export const errorCodes = {
  CONFIG_INVALID: { retryable: false, summary: 'configuration does not match its schema' },
  CONFIG_UNREADABLE: { retryable: false, summary: 'configuration file cannot be read or is not valid JSON' },
  APPLIED_CONFIG_STORE_FAILED: { retryable: true, summary: 'the last applied twin configuration could not be read or written' },
  HUB_DATA_DIR_INVALID: { retryable: false, summary: 'hub data directory is missing or damaged' },
  HUB_NOT_RUNNING: { retryable: false, summary: 'local IoT Hub is not running' },
  HUB_UNREACHABLE: { retryable: true, summary: 'IoT Hub cannot be reached' },
  HUB_REQUEST_FAILED: { retryable: true, summary: 'IoT Hub request failed' },
  HUB_AUTH_FAILED: { retryable: false, summary: 'IoT Hub rejected the credentials' },
  DEVICE_NOT_FOUND: { retryable: false, summary: 'device is not registered' },
  DEVICE_ALREADY_EXISTS: { retryable: false, summary: 'device is already registered' },
  HUB_THROTTLED: { retryable: true, summary: 'IoT Hub throttled the device (over a rate limit)' },
  HUB_QUOTA_EXCEEDED: { retryable: true, summary: 'IoT Hub daily message quota is used up until 00:00 UTC' },
  HUB_MESSAGE_TOO_LARGE: { retryable: false, summary: 'IoT Hub refused a message as too large' },
  TIMEOUT: { retryable: true, summary: 'operation timed out' },
  CONNECTION_STRING_INVALID: { retryable: false, summary: 'connection string is malformed' },
  TELEMETRY_INVALID: { retryable: false, summary: 'telemetry message is not in the fieldlink.readings format' },
  READING_TOO_LARGE: { retryable: false, summary: 'a reading alone is over the IoT Hub message size cap' },
  COMMAND_INVALID: { retryable: false, summary: 'cloud-to-device command is not valid' },
  POWER_TRANSITION_INVALID: { retryable: false, summary: 'power state machine received an event its current state does not accept' },
  OUTBOX_CLOSED: { retryable: false, summary: 'outbox is closed' },
  OUTBOX_STORE_FAILED: { retryable: true, summary: 'outbox file could not be read or written' },
  SENSOR_UNAVAILABLE: { retryable: true, summary: 'sensor is not connected' },
  SENSOR_COMMAND_REJECTED: { retryable: false, summary: 'sensor rejected the command' },
  EMULATOR_FAILED: { retryable: false, summary: 'sensor emulator could not start' },
  BOOT_ID_UNREADABLE: { retryable: false, summary: 'the boot id cannot be read from /proc/sys/kernel/random/boot_id' },
  CLOCK_SOURCE_UNAVAILABLE: { retryable: true, summary: 'the clock synchronisation source (systemd timedate1 over D-Bus) cannot be asked' },
  AUTH_REQUIRED: { retryable: false, summary: 'the request has no valid bearer token (missing, unknown or revoked)' },
  AUTH_FORBIDDEN: { retryable: false, summary: "the token's role does not allow this request" },
  RATE_LIMITED: { retryable: true, summary: 'too many requests with this token; wait for Retry-After' },
  REQUEST_INVALID: { retryable: false, summary: 'request does not match the API schema' },
  ROUTE_NOT_FOUND: { retryable: false, summary: 'no such API route' },
  INTERNAL_ERROR: { retryable: false, summary: 'unexpected error inside the cloud companion' },
  CLOUD_STORE_FAILED: { retryable: true, summary: "the cloud companion's SQLite state file could not be opened, read or written" },
  TOKEN_NAME_TAKEN: { retryable: false, summary: 'an API token with this name already exists' },
  PRECONDITION_FAILED: { retryable: false, summary: "the resource changed since the etag given in If-Match" },
  COMMAND_QUEUE_FULL: { retryable: true, summary: "the gateway's cloud-to-device queue has no room for another command" },
  COMMAND_NOT_FOUND: { retryable: false, summary: 'no command with this id' },
  TOKEN_NOT_FOUND: { retryable: false, summary: 'no API token with this name' },
  PAIRING_CODE_UNKNOWN: { retryable: false, summary: 'no gateway has this pairing code; check the label' },
  PAIRING_SESSION_NOT_FOUND: { retryable: false, summary: 'no pairing session with this id' },
  PAIRING_SESSION_EXPIRED: { retryable: false, summary: 'the pairing session has expired; start a new one with the pairing code' },
  LOCATION_OVERRIDE_NOT_FOUND: { retryable: false, summary: 'the gateway has no location override' },
  PAIRING_DEVICE_NOT_FOUND: { retryable: false, summary: 'the device was not added in this pairing session' },
  DEVICE_PAIRED_ELSEWHERE: { retryable: false, summary: 'the device is already paired with another gateway' },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof errorCodes;

export interface FieldlinkErrorOptions {
  /** Defaults to the registry's summary; say what was being done and with what. */
  message?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
  /** Overrides the registry when this occurrence differs (e.g. a 503 within HUB_REQUEST_FAILED). */
  retryable?: boolean;
}

export class FieldlinkError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, opts: FieldlinkErrorOptions = {}) {
    super(opts.message ?? errorCodes[code].summary, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'FieldlinkError';
    this.code = code;
    this.retryable = opts.retryable ?? errorCodes[code].retryable;
    if (opts.details !== undefined) this.details = opts.details;
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCodes, value);
}

/** True for a FieldlinkError, and when `code` is given, only for one with that code. */
export function isFieldlinkError(e: unknown, code?: ErrorCode): e is FieldlinkError {
  return e instanceof FieldlinkError && (code === undefined || e.code === code);
}
