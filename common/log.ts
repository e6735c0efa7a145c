import { pino } from 'pino';

export type Logger = pino.Logger;

export interface LoggerOptions {
  name?: string;
  level?: string;
  /** Where JSON lines go; stdout when omitted. Tests pass a collecting stream. */
  destination?: pino.DestinationStream;
}

const REDACTED = '[REDACTED]';

/**
 * Field names whose values are secrets wherever they appear. Matched case-insensitively at any
 * depth by the scrub below; the same names feed pino's `redact` paths as a second line of defence.
 */
const SECRET_KEYS = [
  'key',
  'primaryKey',
  'secondaryKey',
  'sharedAccessKey',
  'SharedAccessKey',
  'sharedAccessSignature',
  'connectionString',
  'serviceConnectionString',
  'deviceConnectionString',
  'password',
  'passphrase',
  'secret',
  'clientSecret',
  'privateKey',
  'token',
  'accessToken',
  'refreshToken',
  'authorization',
  'cookie',
  'sas',
  'sig',
] as const;

const SECRET_KEY_SET = new Set(SECRET_KEYS.map((k) => k.toLowerCase()));

/** pino redact paths: top level, one and two levels down (pino cannot express "any depth"). */
const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
];

/*
 * Each pattern removes the secret part and keeps enough context to read the log. Key material in
 * IoT Hub strings is base64 or URL-encoded, so it never contains whitespace or quotes; stopping
 * there leaves the rest of a message intact.
 */
const SECRET_PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  // Connection-string key parts, including a device SAS token given as SharedAccessSignature=….
  // SharedAccessKeyName is a policy name, not a secret, and is left alone.
  [/\b(SharedAccessKey|AccountKey|SharedAccessSignature)=(?:SharedAccessSignature\s+)?[^;\s"'`]*/gi, `$1=${REDACTED}`],
  // A whole SAS token, before the `sig=` rule could leave its `sr`/`se`/`skn` fields behind.
  [/\bSharedAccessSignature\s+sr=[^\s"'`;,]*/gi, `SharedAccessSignature ${REDACTED}`],
  [/\bsig=[^&\s"'`;]*/gi, `sig=${REDACTED}`],
  [/\bBearer\s+[A-Za-z0-9\-._~+/]+=*/gi, `Bearer ${REDACTED}`],
  // Credentials embedded in URLs, e.g. amqps://user:password@host from a transport error.
  [/\b([a-z][a-z0-9+.-]*:\/\/[^:/@\s"'`]+:)[^@\s"'`]+@/gi, `$1${REDACTED}@`],
  // Secret fields inside JSON text (a registry response body logged as a string).
  [
    /("(?:primaryKey|secondaryKey|sharedAccessKey|password|token|accessToken|refreshToken|connectionString|authorization)"\s*:\s*)"(?:[^"\\]|\\.)*"/gi,
    `$1"${REDACTED}"`,
  ],
];

/** Replace every secret this project knows the shape of with `[REDACTED]`. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

// Deeper structures are cut rather than walked: logs are for people, and an unbounded walk of
// an SDK object would cost more than the line is worth.
const MAX_DEPTH = 10;

function isSecretKey(key: string): boolean {
  return SECRET_KEY_SET.has(key.toLowerCase());
}

/**
 * A copy of `value` with every string scrubbed and every secret-named field censored. Errors
 * become pino's serialized form first so their message, stack and cause chain are scrubbed too.
 */
function scrubValue(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[Truncated]';
  seen.add(value);
  try {
    if (value instanceof Error) {
      return scrubValue({ ...pino.stdSerializers.err(value) }, depth, seen);
    }
    if (Buffer.isBuffer(value)) return value;
    const toJSON = (value as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') {
      return scrubValue((toJSON as () => unknown).call(value), depth + 1, seen);
    }
    if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1, seen));
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      copy[key] = isSecretKey(key) && item !== undefined && item !== null ? REDACTED : scrubValue(item, depth + 1, seen);
    }
    return copy;
  } finally {
    seen.delete(value);
  }
}

/**
 * pino treats an Error first argument specially (it becomes `err` and its message the `msg`);
 * keep that behaviour while passing pino only scrubbed copies.
 */
function scrubLogArgs(args: readonly unknown[]): unknown[] {
  const [first, ...rest] = args;
  if (first instanceof Error) {
    const scrubbedRest = rest.map((a) => scrubValue(a));
    const msg = typeof scrubbedRest[0] === 'string' ? [] : [redactSecrets(first.message)];
    return [{ err: scrubValue(first) }, ...msg, ...scrubbedRest];
  }
  return args.map((a) => scrubValue(a));
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: REDACTED },
    serializers: {
      // Errors reaching here were already serialized and scrubbed by the hook; pino's default
      // serializer would re-serialize the plain object and report its type as "Object".
      err: (e: unknown) => scrubValue(e),
    },
    hooks: {
      logMethod(args, method) {
        // pino's typings describe logMethod's args as a tuple it cannot name; the scrubbed copy
        // has the same shape, so casting back to the parameter type is sound.
        method.apply(this, scrubLogArgs(args) as Parameters<typeof method>);
      },
    },
  };
  if (opts.name !== undefined) options.name = opts.name;
  const logger = opts.destination === undefined ? pino(options) : pino(options, opts.destination);
  // pino applies `formatters.bindings` to the root only, and no hook sees child bindings, so
  // scrub them here. Children are created with Object.create(parent), so every descendant
  // inherits this method.
  const child = logger.child;
  logger.child = function scrubbedChild<L extends string = never>(
    this: Logger,
    bindings: pino.Bindings,
    childOptions?: pino.ChildLoggerOptions<L>,
  ): pino.Logger<L> {
    return child.call<Logger, [pino.Bindings, pino.ChildLoggerOptions<L> | undefined], pino.Logger<L>>(
      this,
      scrubValue(bindings) as pino.Bindings,
      childOptions,
    );
  };
  return logger;
}
