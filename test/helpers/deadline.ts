/** Rejects with a message naming `what` if `promise` does not settle within `ms`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns a value other than undefined, or fails after `ms`. */
export async function eventually<T>(ms: number, what: string, check: () => T | undefined | Promise<T | undefined>, everyMs = 20): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** An SDK error as the SDKs throw them: HTTP failures carry the response. */
export type SdkError = Error & { response?: { statusCode?: number } };

/** The error `promise` fails with within `ms`; fails the test if it succeeds instead. */
export async function failure(promise: Promise<unknown>, what = 'request', ms = 5000): Promise<SdkError> {
  return within(ms, what, promise).then(
    () => {
      throw new Error(`${what}: expected it to fail, it succeeded`);
    },
    (e: unknown) => e as SdkError,
  );
}

export function statusOf(e: unknown): number | undefined {
  return (e as SdkError).response?.statusCode;
}
