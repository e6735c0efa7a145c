import { FieldlinkError, type ErrorCode } from './errors.js';

/**
 * Settles with `work`, or rejects with `code` (default HUB_UNREACHABLE) after `ms`. The work
 * itself is not cancelled (the SDKs offer no way); its late result is ignored.
 */
export async function withinDeadline<T>(ms: number, what: string, work: Promise<T>, code: ErrorCode = 'HUB_UNREACHABLE'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FieldlinkError(code, { message: `${what}: no answer${code === 'HUB_UNREACHABLE' ? ' from IoT Hub' : ''} within ${ms} ms` })), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
